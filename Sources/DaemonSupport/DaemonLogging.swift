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
        if detached { SystemLogHandler.openSyslog(identity: program) }
        let journal = !detached && SystemLogHandler.isJournal()
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = if detached {
                SystemLogHandler(label: label, destination: .syslog)
            } else if journal {
                SystemLogHandler(label: label, destination: .journal)
            } else {
                SystemLogHandler(label: label, destination: .standardError)
            }
            handler.logLevel = level
            return handler
        }
    }
}
