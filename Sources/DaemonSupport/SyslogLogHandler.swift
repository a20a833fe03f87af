#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging

/// Where a detached daemon's logs go: the system log, with the same structured metadata.
public struct SyslogLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String

    /// Opens the system log once for the process under `identity`.
    public static func open(identity: String) {
        // openlog keeps the pointer: the identity must live for the whole process.
        openlog(strdup(identity), LOG_PID, LOG_DAEMON)
    }

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let text = "\(event.level) \(fields.isEmpty ? "" : fields + " ")[\(label)] \(event.message)"
        let priority: Int32 = switch event.level {
        case .trace, .debug: LOG_DEBUG
        case .info: LOG_INFO
        case .notice: LOG_NOTICE
        case .warning: LOG_WARNING
        case .error: LOG_ERR
        case .critical: LOG_CRIT
        }
        text.withCString { line in
            withVaList([line]) { vsyslog(priority, "%s", $0) }
        }
    }
}
