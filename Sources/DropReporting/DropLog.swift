import Logging
import ServiceLifecycle
import Synchronization

/// Which drops are worth a log line: the first of each reason in each interval is logged in full,
/// the rest are only counted and summed up at the end of the interval. A flood of bad input then
/// costs a few lines instead of drowning the daemon's real ones (journald's rate limit would drop
/// those first). Time is passed in.
public struct DropTally<Reason: Hashable & Sendable>: Sendable {
    public struct Summary: Equatable, Sendable {
        public var counts: [Reason: Int] = [:]
        public var sources: Set<String> = []
    }

    public let interval: Duration
    private var summary = Summary()
    private var logged: Set<Reason> = []
    private var started: ContinuousClock.Instant?

    public init(interval: Duration) {
        self.interval = interval
    }

    /// Counts one drop; true if this one should be logged in full.
    public mutating func note(_ reason: Reason, source: String, now: ContinuousClock.Instant) -> Bool {
        if started == nil { started = now }
        summary.counts[reason, default: 0] += 1
        if summary.sources.count < 64 { summary.sources.insert(source) }
        return logged.insert(reason).inserted
    }

    /// The drops of the interval that ended, if it ended and there were any beyond the ones logged.
    public mutating func close(now: ContinuousClock.Instant, force: Bool = false) -> Summary? {
        guard let started, force || now - started >= interval else { return nil }
        let ended = summary
        summary = Summary()
        logged = []
        self.started = nil
        return ended.counts.values.reduce(0, +) > ended.counts.count ? ended : nil
    }
}

/// Logs drops through a `DropTally` at warning level, and writes each interval's summary line:
/// the guests' packets in fence-routerd, bus messages in both daemons.
public final class DropLog<Reason: Hashable & Sendable & CustomStringConvertible>: Service, Sendable {
    private let tally: Mutex<DropTally<Reason>>
    private let event: String
    private let summary: String
    public let logger: Logger
    private let clock: any Clock<Duration>

    /// - Parameters:
    ///   - event: the log message of one drop (`dropped packet`).
    ///   - summary: the log message of an interval's summary (`dropped packets in the last interval`).
    public init(event: String, summary: String, interval: Duration = .seconds(10), clock: any Clock<Duration> = ContinuousClock(), logger: Logger) {
        tally = Mutex(DropTally(interval: interval))
        self.event = event
        self.summary = summary
        self.clock = clock
        self.logger = logger
    }

    /// Counts a drop; logs it in full when it is the first of its reason in this interval.
    public func note(_ reason: Reason, source: String, metadata: Logger.Metadata) {
        guard tally.withLock({ $0.note(reason, source: source, now: .now) }) else { return }
        var metadata = metadata
        metadata["reason"] = "\(reason)"
        metadata["source"] = "\(source)"
        metadata["note"] = "further drops for this reason are summed up every \(tally.withLock { $0.interval })"
        logger.warning("\(event)", metadata: metadata)
    }

    /// Writes the summary of every interval that had more drops than it logged.
    public func run() async throws {
        let interval = tally.withLock { $0.interval }
        let clock = self.clock
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await clock.sleep(for: interval)
                self.flush()
            }
        }
        flush(force: true)
    }

    public func flush(force: Bool = false) {
        guard let ended = tally.withLock({ $0.close(now: .now, force: force) }) else { return }
        var metadata: Logger.Metadata = ["sources": "\(ended.sources.count)\(ended.sources.count == 64 ? "+" : "")"]
        for (reason, count) in ended.counts { metadata["\(reason)"] = "\(count)" }
        logger.warning("\(summary)", metadata: metadata)
    }
}
