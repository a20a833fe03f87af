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

    /// Structured logs, one line per event: to standard error (the journal under systemd) in the
    /// foreground, to the system log when detached.
    public static func bootstrap(level: Logger.Level, program: String, detached: Bool) {
        if detached { SyslogLogHandler.open(identity: program) }
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = detached ? SyslogLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
