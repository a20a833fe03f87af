#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BuildInfo
import DaemonSupport

/// One of fencectl's commands: its command line, read into its settings, and what it does.
protocol Subcommand: Sendable {
    static var usage: Usage { get }
    /// Reads the parsed command line; throws when its parts do not fit together.
    init(_ line: ParsedCommandLine) throws(UsageError)
    func run() async throws -> ExitStatus
}

/// How fencectl ends (Deploy/man/fencectl.8.roff lists them).
enum ExitStatus: Equatable {
    case success
    /// It failed, or a check found an error.
    case failure
    /// `fence`: fence_xvm's status for the answer (2 off, 3 permission denied).
    case response(UInt8)
    /// The command line was wrong (sysexits' EX_USAGE).
    case usage

    var code: Int32 {
        switch self {
        case .success: 0
        case .failure: 1
        case .response(let code): Int32(code)
        case .usage: 64
        }
    }
}

@main
enum Fencectl {
    static let commands: [any Subcommand.Type] = [
        KeygenCommand.self, ConfigCheckCommand.self, ConfigureCommand.self, InventoryCommand.self,
        HostStatementCommand<ConfirmDown>.self, HostStatementCommand<Forget>.self, FenceCommand.self,
    ]
    static let usages = commands.map { $0.usage }

    static func main() async {
        exit(await run(Array(CommandLine.arguments.dropFirst())).code)
    }

    static func run(_ words: [String]) async -> ExitStatus {
        switch words.first {
        case nil, "-h", "--help":
            print(Help.overview(usages), terminator: "")
            return .success
        case "--version":
            print("fencectl \(BuildInfo.description)")
            return .success
        case "--generate-completion-script":
            guard words.count == 2, let shell = Completions.Shell(rawValue: words[1]) else {
                return usage(UsageError("--generate-completion-script takes bash or zsh"), nil)
            }
            print(Completions.script(for: shell, usages), terminator: "")
            return .success
        case "help":
            // `fencectl help host forget`, as `fencectl host forget --help`; nothing is run.
            return help(Array(words.dropFirst()))
        default:
            break
        }
        if ParsedCommandLine.asksForHelp(words) || group(words[0]) != nil && words.count == 1 {
            return help(Array(words.prefix { !$0.hasPrefix("-") }))
        }
        guard let command = commands.first(where: { words.starts(with: $0.usage.path) }) else { return unknown(words) }
        let usage = command.usage
        do {
            let line = try ParsedCommandLine(Array(words.dropFirst(usage.path.count)), usage: usage)
            if line.flag(.version) {
                print("fencectl \(BuildInfo.description)")
                return .success
            }
            return try await command.init(line).run()
        } catch let error as UsageError {
            return self.usage(error, usage)
        } catch {
            StandardError.write("\(usage.name): \(error)\n")
            return .failure
        }
    }

    /// The commands of a group (`config`, `host`); nil for a word that names none.
    private static func group(_ word: String) -> [Usage]? {
        let members = usages.filter { $0.path.count > 1 && $0.path[0] == word }
        return members.isEmpty ? nil : members
    }

    /// The help of the command, or group, that `path` begins with.
    private static func help(_ path: [String]) -> ExitStatus {
        if let usage = usages.first(where: { path.starts(with: $0.path) }) {
            print(Help.text(usage), terminator: "")
        } else if let first = path.first, let members = group(first), path.count == 1 {
            print(Help.group(first, members), terminator: "")
        } else if path.isEmpty {
            print(Help.overview(usages), terminator: "")
        } else {
            return unknown(path)
        }
        return .success
    }

    private static func unknown(_ words: [String]) -> ExitStatus {
        usage(UsageError("unknown command \"\(words.prefix(group(words[0]) == nil ? 1 : 2).joined(separator: " "))\""), nil)
    }

    /// Says what was wrong with the command line, and how it goes.
    private static func usage(_ error: UsageError, _ usage: Usage?) -> ExitStatus {
        let hint = usage.map { "usage: \(Help.synopsis($0))\nSee '\($0.name) --help'." } ?? "See 'fencectl --help'."
        StandardError.write("\(usage?.name ?? "fencectl"): error: \(error)\n\(hint)\n")
        return .usage
    }
}
