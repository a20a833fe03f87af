/// A subcommand's command line, declared once: parsed by the rules of `getopt_long` (`--name
/// value`, `--name=value`, `-f value`, `-fvalue`, `--` ends the options), shown as its help, and
/// written out as shell completions. An argument-parsing library brought Foundation's core into
/// fencectl: 35 MB against the daemons' 25.
struct Usage: Sendable {
    /// What a shell offers for a value.
    enum Completion: Sendable, Equatable {
        case nothing
        case files
        case directories
        case words([String])
    }

    struct Option: Sendable {
        var long: String?
        var short: Character?
        /// The value's name in the help; nil for a flag.
        var valueName: String?
        var help: String
        var completion = Completion.nothing
        var defaultValue: String?
        var isRequired = false

        /// How the parsed command line names it: the long name, else the letter.
        var key: String { long ?? short.map { String($0) } ?? "" }

        /// `-h`, `--help`: what a command line may say.
        var spellings: [String] { [short.map { "-\($0)" }, long.map { "--\($0)" }].compactMap { $0 } }

        /// `-h, --help` or `--via <listener>`, for the help.
        var spelling: String {
            let names = spellings.joined(separator: ", ")
            return valueName.map { "\(names) <\($0)>" } ?? names
        }

        /// An option with a value. `.words` as its completion are also the only values it takes.
        static func value(_ long: String, _ valueName: String, _ help: String, default defaultValue: String? = nil,
                          completion: Completion = .nothing, required: Bool = false) -> Option {
            Option(long: long, valueName: valueName, help: help, completion: completion, defaultValue: defaultValue, isRequired: required)
        }

        static func flag(_ long: String, _ help: String) -> Option {
            Option(long: long, help: help)
        }

        /// `-f FILE`, as the daemons take it: every command that reads or writes the configuration.
        static let configFile = Option(short: "f", valueName: "file", help: "The configuration file (the one the daemons read).",
                                       completion: .files, defaultValue: "/etc/fence_virt.conf")
        static let json = flag("json", "Print JSON.")
        static let help = Option(long: "help", short: "h", help: "Show this help.")
        static let version = flag("version", "Show the version.")
    }

    struct Argument: Sendable {
        var name: String
        var help: String
        var isOptional = false
        var completion = Completion.nothing
    }

    /// The words after `fencectl` that name the command.
    var path: [String]
    var abstract: String
    var discussion: String?
    var arguments: [Argument] = []
    var options: [Option] = []

    var name: String { (["fencectl"] + path).joined(separator: " ") }
    /// Its own options, then help and version, which every command takes.
    var allOptions: [Option] { options + [.help, .version] }
}

/// What was wrong with a command line, for the operator (exit status 64, as sysexits' EX_USAGE).
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A command line parsed against its `Usage`: the options by key, the arguments in order.
struct ParsedCommandLine: Sendable {
    private var values: [String: String] = [:]
    private var flags: Set<String> = []
    private(set) var arguments: [String] = []

    init(_ words: [String], usage: Usage) throws(UsageError) {
        let options = usage.allOptions
        var remaining = words[...]
        while let word = remaining.popFirst() {
            if word == "--" {
                arguments += remaining
                break
            }
            if word.hasPrefix("--") {
                let body = word.dropFirst(2)
                let name = String(body.prefix { $0 != "=" })
                let attached = body.firstIndex(of: "=").map { String(body[body.index(after: $0)...]) }
                guard let option = options.first(where: { $0.long == name }) else { throw UsageError("unknown option --\(name)") }
                if option.valueName == nil {
                    guard attached == nil else { throw UsageError("--\(name) takes no value") }
                    flags.insert(option.key)
                } else {
                    if let attached {
                        values[option.key] = attached
                    } else {
                        values[option.key] = try Self.value(after: "--\(name)", &remaining)
                    }
                }
            } else if word.hasPrefix("-"), word.count > 1 {
                var letters = word.dropFirst()
                while let letter = letters.popFirst() {
                    guard let option = options.first(where: { $0.short == letter }) else { throw UsageError("unknown option -\(letter)") }
                    guard option.valueName != nil else {
                        flags.insert(option.key)
                        continue
                    }
                    // The value is the rest of this word, or else the next one.
                    let attached = String(letters)
                    letters = ""
                    values[option.key] = try attached.isEmpty ? Self.value(after: "-\(letter)", &remaining) : attached
                }
            } else {
                arguments.append(word)
            }
        }
        if flags.contains(Usage.Option.version.key) { return }
        if arguments.count > usage.arguments.count { throw UsageError("unexpected argument \"\(arguments[usage.arguments.count])\"") }
        if let missing = usage.arguments.dropFirst(arguments.count).first(where: { !$0.isOptional }) {
            throw UsageError("missing <\(missing.name)>")
        }
        if let missing = usage.options.first(where: { $0.isRequired && values[$0.key] == nil }) {
            throw UsageError("missing \(missing.spelling)")
        }
        for option in usage.options {
            if case .words(let choices) = option.completion, let value = values[option.key], !choices.contains(value) {
                throw UsageError("\(option.spelling.prefix { $0 != " " }): \"\(value)\" is not one of \(choices.joined(separator: ", "))")
            }
        }
    }

    /// Whether `words` ask for help: `-h` or `--help` before any `--`, whatever else is wrong.
    static func asksForHelp(_ words: [String]) -> Bool {
        words.prefix { $0 != "--" }.contains { $0 == "-h" || $0 == "--help" }
    }

    /// The next word as an option's value. A word that looks like an option is refused: `keygen
    /// --host --router r` must not name a host "--router". (`--name=-x` and `-f-x` still pass one.)
    private static func value(after option: String, _ remaining: inout ArraySlice<String>) throws(UsageError) -> String {
        guard let value = remaining.popFirst(), !value.hasPrefix("-") || value == "-" else { throw UsageError("\(option) needs a value") }
        return value
    }

    func flag(_ option: Usage.Option) -> Bool { flags.contains(option.key) }

    /// The value given for an option without a default.
    func value(_ option: Usage.Option) -> String? {
        precondition(option.defaultValue == nil, "\(option.key) has a default: read it with value(defaulted:)")
        return values[option.key]
    }

    /// The value of an option declared with a default: the one given, else that default.
    func value(defaulted option: Usage.Option) -> String {
        guard let value = values[option.key] ?? option.defaultValue else { preconditionFailure("\(option.key) has no default") }
        return value
    }

    /// The value of an option declared with a default, as a whole number.
    func integer(defaulted option: Usage.Option) throws(UsageError) -> Int {
        let text = value(defaulted: option)
        guard let number = Int(text) else { throw UsageError("--\(option.key): \"\(text)\" is not a whole number") }
        return number
    }

    /// The option's value as one of `T`'s cases (the usage lists them as its completion words,
    /// and the parser refused any other).
    func choice<T: RawRepresentable>(_ option: Usage.Option, as type: T.Type) -> T? where T.RawValue == String {
        value(option).flatMap(T.init(rawValue:))
    }

    func argument(_ index: Int) -> String? { index < arguments.count ? arguments[index] : nil }
}
