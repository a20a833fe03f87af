import Foundation
import PackagePlugin

/// Writes the checkout's commit into the target it serves, before every build: `--version` then
/// says which commit a binary was built from. Outside a git checkout (a source tarball) the commit
/// is nil. The file is rewritten only when the commit changes, so it costs no recompilation.
@main
struct GitCommit: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "Generated")
        let file = output.appending(path: "GeneratedBuildInfo.swift").path
        let package = context.package.directoryURL.path
        let script = """
            package=$1 output=$2 file=$3
            git() { command git -c safe.directory="$package" -C "$package" "$@"; }
            commit=
            # The package's own checkout only: a tarball unpacked inside another one has none.
            if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$package" && pwd -P)" ]; then
                commit=$(git rev-parse --short=12 HEAD 2>/dev/null) || commit=
            fi
            if [ -n "$commit" ]; then
                [ -z "$(git status --porcelain 2>/dev/null)" ] || commit="$commit-dirty"
                value="\\"$commit\\""
            else
                value=nil
            fi
            mkdir -p "$output"
            text="enum GeneratedBuildInfo { static let commit: String? = $value }"
            [ "$(cat "$file" 2>/dev/null)" = "$text" ] || printf '%s\\n' "$text" > "$file"
            """
        return [
            .prebuildCommand(
                displayName: "Recording the git commit of \(target.name)",
                executable: URL(filePath: "/bin/sh"),
                arguments: ["-c", script, "git-commit", package, output.path, file],
                outputFilesDirectory: output
            )
        ]
    }
}
