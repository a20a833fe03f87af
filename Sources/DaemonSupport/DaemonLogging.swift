import Logging

public enum DaemonLogging {
    /// The log level for a fence_virtd-style debug level: 0 info, 1 debug, 2 and up trace.
    public static func level(debug: Int) -> Logger.Level {
        switch debug {
        case ...0: .info
        case 1: .debug
        default: .trace
        }
    }

    /// Structured logs, one line per event: to the system log when detached; in the foreground to
    /// standard error, with each line's priority when that is the journal (under systemd).
    public static func bootstrap(level: Logger.Level, program: String, detached: Bool) {
        if detached { SyslogLogHandler.open(identity: program) }
        let journal = !detached && JournalLogHandler.isJournal()
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = if detached {
                SyslogLogHandler(label: label)
            } else if journal {
                JournalLogHandler(label: label)
            } else {
                StreamLogHandler.standardError(label: label)
            }
            handler.logLevel = level
            return handler
        }
    }
}
