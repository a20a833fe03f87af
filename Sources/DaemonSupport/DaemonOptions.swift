/// The command line of fence_virtd, shared by our daemons, read by the rules of POSIX `getopt`
/// as fence_virtd reads it (so `-Fw -d2 -f FILE`, `-fFILE` and the other forms mean the same). A
/// full argument-parsing library would pull Foundation into every daemon for nothing.
public struct DaemonOptions: Sendable, Equatable {
    public var foreground = false
    public var configFile = "/etc/fence_virt.conf"
    /// `-d`: overrides the file's `debug`.
    public var debugLevel: Int?
    public var pidFile: String?
    public var waitForBackend = false
    public var showHelp = false
    /// `--version`: print the version and the commit, and exit.
    public var showVersion = false
    /// `-c`: run the configurator on the configuration file instead of the daemon.
    public var configure = false

    public init() {}

    /// What went wrong on the command line, phrased for the operator.
    public struct UsageError: Error, CustomStringConvertible, Equatable {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Parses `arguments` (without the program name).
    public init(parsing arguments: [String]) throws(UsageError) {
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            if argument == "--" { break }
            if argument == "--version" {
                showVersion = true
                continue
            }
            guard argument.hasPrefix("-"), argument.count > 1 else {
                throw UsageError(description: "unexpected argument \"\(argument)\"")
            }
            var letters = argument.dropFirst()
            while let letter = letters.popFirst() {
                switch letter {
                case "F": foreground = true
                case "w": waitForBackend = true
                case "h": showHelp = true
                case "c": configure = true
                case "f", "d", "p":
                    // The value is the rest of this argument, or else the next one.
                    let attached = String(letters)
                    letters = ""
                    guard let value = attached.isEmpty ? remaining.popFirst() : attached else {
                        throw UsageError(description: "-\(letter) needs a value")
                    }
                    try set(letter, value)
                default:
                    throw UsageError(description: "unknown option -\(letter)")
                }
            }
        }
        if let extra = remaining.first { throw UsageError(description: "unexpected argument \"\(extra)\"") }
    }

    private mutating func set(_ letter: Character, _ value: String) throws(UsageError) {
        switch letter {
        case "f": configFile = value
        case "p": pidFile = value
        default:
            guard let level = Int(value), level >= 0 else { throw UsageError(description: "-d needs a number, not \"\(value)\"") }
            debugLevel = level
        }
    }

    /// The usage text, in the layout of fence_virtd's.
    public static func usage(program: String, summary: String) -> String {
        """
        usage: \(program) [options]
        \(summary)

          -F            Do not fork into the background (run in the foreground).
          -f <file>     Use <file> as the configuration file (default /etc/fence_virt.conf).
          -d <level>    Set the debug level: 1 debug, 2 and up trace (overrides the file's 'debug').
          -p <file>     Write the process id to <file>; refuse to start if it names a running daemon.
          -w            Wait for the backend to become available instead of exiting.
          -c            Ask the configuration questions and write the configuration file.
          -h            Show this help and exit.
          --version     Show the version (and the git commit it was built from) and exit.

        """
    }
}
