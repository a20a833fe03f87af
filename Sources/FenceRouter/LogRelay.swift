import Logging
import Synchronization

/// Writes log lines on a task of its own, for code that runs on the bus connection's thread: a
/// write to a slow journal there would hold every command and result on the connection.
///
/// At most `capacity` lines wait; beyond that they are counted, and the count is logged after
/// those waiting. Audit lines (with an `audit` metadata key) are always kept. Lines still waiting
/// when `run` ends, finished or cancelled, are written before it returns; lines after that (or
/// after `finish()`) are written where they are made.
final class LogRelay: Sendable {
    private typealias Line = @Sendable () -> Void
    private struct Waiting {
        var lines: [Line] = []
        var dropped = 0
        var finished = false
    }

    private let waiting = Mutex(Waiting())
    private let wake = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    private let capacity: Int
    private let logger: Logger

    init(capacity: Int = 4096, logger: Logger) {
        self.capacity = capacity
        self.logger = logger
    }

    /// A logger like `target` (its handler, metadata and level) whose lines go through this relay.
    func relaying(_ target: Logger) -> Logger {
        Logger(label: target.label) { _ in Handler(target: target.handler, relay: self) }
    }

    /// Writes the lines as they come until `finish()` or cancellation, then those left.
    func run() async {
        for await _ in wake.stream { writeWaiting() }
        waiting.withLock { $0.finished = true }
        writeWaiting()
    }

    /// No more lines through the task: `run` writes those waiting and returns.
    func finish() {
        waiting.withLock { $0.finished = true }
        wake.continuation.finish()
    }

    private func write(_ line: @escaping Line, keep: Bool) {
        let relayed = waiting.withLock { waiting -> Bool in
            guard !waiting.finished else { return false }
            if waiting.lines.count >= capacity, !keep {
                waiting.dropped += 1
            } else {
                waiting.lines.append(line)
            }
            return true
        }
        if relayed { wake.continuation.yield() } else { line() }
    }

    private func writeWaiting() {
        let (lines, dropped) = waiting.withLock { waiting in
            defer { (waiting.lines, waiting.dropped) = ([], 0) }
            return (waiting.lines, waiting.dropped)
        }
        for line in lines { line() }
        if dropped > 0 {
            logger.warning("log lines dropped: more were waiting than the relay holds", metadata: ["dropped": "\(dropped)"])
        }
    }

    private struct Handler: LogHandler {
        let target: any LogHandler
        let relay: LogRelay
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level

        init(target: any LogHandler, relay: LogRelay) {
            self.target = target
            self.relay = relay
            logLevel = target.logLevel
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            // Gathered here: a provider reads the caller's task-local values.
            var lineMetadata = metadata
            if let provided = metadataProvider?.get() { lineMetadata.merge(provided) { $1 } }
            if let own = event.metadata { lineMetadata.merge(own) { $1 } }
            var relayed = event
            relayed.metadata = lineMetadata
            let target = target
            relay.write({ [relayed] in target.log(event: relayed) }, keep: lineMetadata["audit"] != nil)
        }
    }
}
