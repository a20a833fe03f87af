import Foundation
import Testing
import TestSupport

/// fencectl's own command line (no argument-parsing library): getopt_long's forms, help, usage
/// errors with exit status 64, and the completions written from the same declarations.
@Suite("fencectl command line")
struct UsageTests {
    func fencectl(_ arguments: String...) async throws -> ProcessResult {
        try await Command.run([try Products.path("fencectl")] + arguments)
    }

    @Test("usage errors name the problem and the command's usage, with exit status 64")
    func usageErrors() async throws {
        let cases: [([String], String)] = [
            (["fence", "vm1"], "missing --action <action>"),
            (["fence", "vm1", "--action", "explode"], "--action: \"explode\" is not one of off, on, reboot, status"),
            (["fence", "vm1", "--action"], "--action needs a value"),
            (["fence", "vm1", "--action", "off", "--timeout", "soon"], "--timeout: \"soon\" is not a whole number"),
            (["fence", "--action", "off"], "missing <domain>"),
            (["fence", "vm1", "vm2", "--action", "off"], "unexpected argument \"vm2\""),
            (["inventory", "--frobnicate"], "unknown option --frobnicate"),
            (["inventory", "--json=yes"], "--json takes no value"),
            (["keygen", "k", "--host", "--router", "b"], "--host needs a value"),
            (["host", "reboot", "hv1"], "unknown command \"host reboot\""),
            (["explode"], "unknown command \"explode\""),
            (["host", "forget", "hv1"], "add --yes if it is gone for good"),
            (["keygen", "k", "--host", "a", "--router", "b"], "one of --host, --router and --operator at a time"),
        ]
        for (arguments, message) in cases {
            let result = try await Command.run([try Products.path("fencectl")] + arguments)
            #expect(result.status == 64, "\(arguments): \(result)")
            #expect(result.error.contains(message), "\(arguments): \(result)")
            #expect(result.error.contains("--help"), "points to the help: \(result)")
        }
    }

    @Test("getopt_long's forms mean the same: --name value, --name=value, -f FILE, -fFILE, and -- before an argument")
    func optionForms() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-usage")
        let missing = directory.path("missing.conf")
        let lines = [
            ["fence", "vm1", "--action", "status", "-f", missing],
            ["fence", "vm1", "--action=status", "-f\(missing)"],
            ["fence", "-f", missing, "--action", "status", "vm1"],
            ["fence", "--action", "status", "-f", missing, "--", "vm1"],
        ]
        for line in lines {
            let result = try await Command.run([try Products.path("fencectl")] + line)
            #expect(result.status == 1, "parsed, then the file is missing: \(line): \(result)")
            #expect(result.error.contains("missing.conf: cannot read the file"), "\(line): \(result)")
        }
    }

    @Test("help: the overview lists every command; each command's help shows its arguments, options, values and defaults")
    func help() async throws {
        let overview = try await fencectl("--help")
        #expect(overview.status == 0)
        for command in ["keygen", "config check", "configure", "inventory", "host confirm-down", "host forget", "fence"] {
            #expect(overview.output.contains("\n  \(command) "), "\(command) in \(overview.output)")
        }
        let fence = try await fencectl("fence", "--help")
        #expect(fence.status == 0)
        #expect(fence.output.contains("USAGE: fencectl fence <domain> --action <action> [-f <file>] [--via <listener>]\n       [--timeout <seconds>] [--json]"), "\(fence.output)")
        let words = fence.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(words.contains("--action <action> What to do to the domain. (values: off, on, reboot, status)"), "\(fence.output)")
        #expect(words.contains("-f <file> The configuration file (the one the daemons read). (default: /etc/fence_virt.conf)"), "\(fence.output)")
        #expect(fence.output.split(separator: "\n").allSatisfy { $0.count <= 80 }, "lines fit 80 columns: \(fence.output)")
        let viaHelp = try await fencectl("help", "host", "forget")
        #expect(viaHelp.status == 0 && viaHelp.output.contains("USAGE: fencectl host forget <host>"), "\(viaHelp)")
        for group in [["host"], ["host", "--help"], ["help", "host"]] {
            let result = try await Command.run([try Products.path("fencectl")] + group)
            #expect(result.status == 0 && result.output.contains("  confirm-down ") && result.output.contains("  forget "), "\(group): \(result)")
        }
        let helpFirst = try await fencectl("fence", "--bogus", "--help")
        #expect(helpFirst.status == 0 && helpFirst.output.contains("USAGE: fencectl fence"), "help wins over an error: \(helpFirst)")
        // help shows, never runs: this would write a key for an operator named --help.
        let directory = try TemporaryDirectory(prefix: "fr-usage")
        let neverRun = try await Command.run([try Products.path("fencectl"), "help", "keygen", directory.path("k.key"), "--operator"])
        #expect(neverRun.status == 0 && neverRun.output.contains("USAGE: fencectl keygen"), "\(neverRun)")
        #expect(!FileManager.default.fileExists(atPath: directory.path("k.key")))
        let version = try await fencectl("--version")
        #expect(version.status == 0 && version.output.hasPrefix("fencectl "), "\(version)")
    }

    @Test("bash completion: commands, subcommands, options, and the values an option takes")
    func bashCompletion() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-completion")
        let script = directory.path("fencectl.bash")
        let written = try await Command.run(["sh", "-c", "\(try Products.path("fencectl")) --generate-completion-script bash > \(script)"])
        #expect(written.status == 0, "\(written)")
        func complete(_ words: String) async throws -> String {
            // compopt works only inside readline's completion: a no-op here, so that any other error output fails.
            let result = try await Command.run(["bash", "-c", """
                compopt() { :; }
                source \(script)
                COMP_WORDS=(\(words)); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _fencectl; echo "${COMPREPLY[*]}"
                """])
            #expect(result.status == 0 && result.error.isEmpty, "\(result)")
            return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try await complete("fencectl ''") == "keygen config configure inventory host fence help --help --version")
        #expect(try await complete("fencectl host ''") == "confirm-down forget")
        #expect(try await complete("fencectl fence vm1 --action ''") == "off on reboot status")
        #expect(try await complete("fencectl fence vm1 --v") == "--via --version")
        #expect(try await complete("fencectl host forget hv1 --ye") == "--yes")
        #expect(try await complete("fencectl keygen --host") == "--host")
        #expect(try await complete("fencectl fence vm1 --timeout ''") == "", "a number: nothing offered")
        #expect(try await complete("fencectl config check -f \(directory.path("fencectl.b"))") == script, "-f takes a file")
    }

    @Test("zsh completion, in a zsh driven through a pseudo-terminal: commands, subcommands, options, values",
          .enabled(if: TestEnvironment.shouldRun([.command("zsh", package: "zsh")]), "needs zsh"))
    func zshCompletion() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-completion")
        let written = try await Command.run(["sh", "-c", "\(try Products.path("fencectl")) --generate-completion-script zsh > \(directory.path("_fencectl"))"])
        #expect(written.status == 0, "\(written)")
        let parsed = try await Command.run(["zsh", "-n", directory.path("_fencectl")])
        #expect(parsed.status == 0 && parsed.error.isEmpty, "\(parsed)")
        // Each line is typed with a tab; the driver reads until the expected text shows (each is
        // absent from what came before), so a completion that fails hangs it into the timeout.
        let driver = directory.path("drive.zsh")
        try """
            zmodload zsh/zpty
            zpty z zsh -f -i
            zpty -w z 'fpath=(\(directory.url.path) $fpath); autoload -U compinit; compinit -u -D; setopt nobeep'
            for line expected in "$@"; do
                zpty -w -n z "$line"$'\\t'
                zpty -r z out "*$expected*" || exit 1
                print -r -- "completed: $line -> $expected"
                zpty -w z $'\\x03'
            done
            zpty -d z
            """.write(toFile: driver, atomically: true, encoding: .utf8)
        let cases = [
            ("fencectl ", "confirm-down, forget"),
            ("fencectl host ", "forget"),
            ("fencectl fence vm1 --action ", "reboot"),
            ("fencectl config check --sk", "--skip-files"),
            ("fencectl host forget hv1 --y", "--yes"),
            ("fencectl keygen --tr", "--trust-directory"),
        ]
        let result = try await Command.run(["timeout", "60", "zsh", "-f", driver] + cases.flatMap { [$0.0, $0.1] })
        #expect(result.status == 0, "\(result)")
        for (line, expected) in cases {
            #expect(result.output.contains("completed: \(line) -> \(expected)"), "\(result)")
        }
    }
}
