#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging

/// One log event as a line without a timestamp (the system log and the journal add their own):
/// `level key=value … [tag] message`, the metadata sorted by key.
struct LogLine {
    static func format(tag: String, handlerMetadata: Logger.Metadata, event: LogEvent) -> String {
        var line = "\(event.level) "
        appendFields(handlerMetadata: handlerMetadata, event: event, to: &line, after: " ")
        line += "[\(tag)] \(event.message)"
        return line
    }

    /// What swift-log's stream handler writes, with the time formatted once per line by
    /// `localtime_r` (that handler's clock read the time zone file for every line).
    static func stream(label: String, timestamp: String, handlerMetadata: Logger.Metadata, event: LogEvent) -> String {
        var line = "\(timestamp) \(event.level) \(label):"
        appendFields(handlerMetadata: handlerMetadata, event: event, to: &line, before: " ")
        line += " [\(event.source)] \(event.message)\n"
        return line
    }

    /// The local time as `2026-12-06T15:15:33+0000`.
    static func timestamp(_ seconds: time_t) -> String {
        var seconds = seconds
        var local = tm()
        guard localtime_r(&seconds, &local) != nil else { return "\(seconds)" }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 32) { buffer in
            let length = strftime(buffer.baseAddress!, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &local)
            return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: length), as: UTF8.self)
        }
    }

    /// `key=value` for every field, space-separated and sorted by key, the event's over the
    /// handler's, and its error; with `before` and `after` around them when there is any.
    private static func appendFields(handlerMetadata: Logger.Metadata, event: LogEvent, to line: inout String, before: String = "", after: String = "") {
        var fields = handlerMetadata.isEmpty ? event.metadata ?? [:] : handlerMetadata.merging(event.metadata ?? [:]) { $1 }
        if let error = event.error { fields["error"] = "\(error)" }
        guard !fields.isEmpty else { return }
        line += before
        for (index, field) in fields.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { line += " " }
            line += field.key
            line += "="
            line += "\(field.value)"
        }
        line += after
    }
}

extension Logger.Level {
    /// The syslog priority (also the journal's): what `journalctl -p` filters on.
    var syslogPriority: Int32 {
        switch self {
        case .trace, .debug: LOG_DEBUG
        case .info: LOG_INFO
        case .notice: LOG_NOTICE
        case .warning: LOG_WARNING
        case .error: LOG_ERR
        case .critical: LOG_CRIT
        }
    }
}

/// Where a daemon's logs go, one line per event with its structured metadata: to a system
/// service (syslog, the journal) with its priority and no timestamp of ours (the log adds its
/// own); to a terminal or a file with the local time.
public struct SystemLogHandler: LogHandler {
    public enum Destination: Sendable {
        /// The system log, detached: syslog(3), tagged with the logger's label.
        case syslog
        /// Standard error when it is the journal (systemd sets `JOURNAL_STREAM` to its device and
        /// inode): each line starts with its priority as `<N>`, which the journal takes off and
        /// keeps, so that `journalctl -p warning` shows the warnings.
        case journal
        /// Standard error otherwise (a terminal, a file): each line with its local time, as
        /// swift-log's stream handler writes it.
        case standardError
    }

    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let destination: Destination

    /// Opens the system log once for the process under `identity`.
    public static func openSyslog(identity: String) {
        // openlog keeps the pointer: the identity must live for the whole process.
        openlog(strdup(identity), LOG_PID, LOG_DAEMON)
    }

    public init(label: String, destination: Destination) {
        self.label = label
        self.destination = destination
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        switch destination {
        case .syslog:
            LogLine.format(tag: label, handlerMetadata: metadata, event: event).withCString { line in
                withVaList([line]) { vsyslog(event.level.syslogPriority, "%s", $0) }
            }
        case .journal:
            StandardError.write(Self.journalLine(handlerMetadata: metadata, event: event))
        case .standardError:
            StandardError.write(LogLine.stream(label: label, timestamp: LogLine.timestamp(time(nil)), handlerMetadata: metadata, event: event))
        }
    }

    /// Tagged with the module that logged, as on standard error outside the journal (the journal
    /// names the program already).
    static func journalLine(handlerMetadata: Logger.Metadata, event: LogEvent) -> String {
        let text = LogLine.format(tag: event.source, handlerMetadata: handlerMetadata, event: event)
        // A message of several lines keeps its priority on each.
        return text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { "<\(event.level.syslogPriority)>\($0)\n" }.joined()
    }

    /// Whether descriptor `descriptor` is the stream `JOURNAL_STREAM` names (`device:inode`):
    /// inherited by a child whose stderr went elsewhere, the variable alone proves nothing.
    public static func isJournal(_ descriptor: Int32 = 2, environment value: String? = getenv("JOURNAL_STREAM").map { String(cString: $0) }) -> Bool {
        guard let value else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }
}
