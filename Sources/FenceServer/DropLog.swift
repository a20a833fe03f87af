import FenceWire
import Logging
import ServiceLifecycle
import Synchronization

/// Why the front end dropped a packet or a connection without serving it.
public enum DropReason: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case wrongLength = "wrong-length"
    case unknownHashType = "unknown-hash-type"
    case domainNotTerminated = "domain-not-terminated"
    case domainNotZeroPadded = "domain-not-zero-padded"
    case domainNotUTF8 = "domain-not-utf8"
    case domainControlCharacter = "domain-control-character"
    /// A stream request naming a call-back address, port or family (a multicast packet replayed onto a stream).
    case notAStreamRequest = "not-a-stream-request"
    case hashTooWeak = "hash-too-weak"
    case noKey = "no-key"
    case digestMismatch = "digest-mismatch"
    case badFamily = "bad-family"
    case unusableAddress = "unusable-address"
    case wrongInterface = "wrong-interface"
    /// An exact repeat of a signed packet accepted before: a replay.
    case replay
    /// A copy of a request already under way or answered (every client sends several).
    case duplicate
    case retryLimited = "retry-limited"
    case expired
    /// Another request named the same call-back endpoint.
    case conflict
    case sourceQuota = "source-quota"
    case historyFull = "history-full"
    case callbacksBusy = "callbacks-busy"
    case callbackFailed = "callback-failed"
    case authenticationFailed = "authentication-failed"
    /// The client's challenge was one a daemon issued.
    case reflectedChallenge = "reflected-challenge"
    /// The peer sent more than the exchange allows.
    case excessData = "excess-data"
    case incompleteRequest = "incomplete-request"
    /// The client authenticated, then closed before its request could run: nothing was done.
    case clientGone = "client-gone"
    case tooManyConnections = "too-many-connections"

    public var description: String { rawValue }

    init(_ code: MalformedRequest.Code) {
        self = switch code {
        case .wrongLength: .wrongLength
        case .unknownHashType: .unknownHashType
        case .domainNotTerminated: .domainNotTerminated
        case .domainNotZeroPadded: .domainNotZeroPadded
        case .domainNotUTF8: .domainNotUTF8
        case .domainControlCharacter: .domainControlCharacter
        }
    }

    init(_ code: VerificationFailure.Code) {
        self = switch code {
        case .hashTooWeak: .hashTooWeak
        case .noKey: .noKey
        case .digestMismatch: .digestMismatch
        }
    }

    init(_ refusal: Conversation.Refusal) {
        self = switch refusal {
        case .reflectedChallenge: .reflectedChallenge
        case .wrongResponse: .authenticationFailed
        case .excessData: .excessData
        }
    }

    /// Copies of requests under way are the normal case, not worth a warning.
    var isExpected: Bool { self == .duplicate }
}

/// Which dropped packets are worth a log line: the first of each reason in each interval is logged
/// in full, the rest are only counted and summed up at the end of the interval. A flood of bad
/// packets then costs a few lines instead of drowning the daemon's real ones (journald's rate
/// limit would drop those first). Time is passed in.
struct DropTally: Sendable {
    struct Summary: Equatable, Sendable {
        var counts: [DropReason: Int] = [:]
        var sources: Set<String> = []
    }

    let interval: Duration
    private var summary = Summary()
    private var logged: Set<DropReason> = []
    private var started: ContinuousClock.Instant?

    init(interval: Duration) {
        self.interval = interval
    }

    /// Counts one drop; true if this one should be logged in full.
    mutating func note(_ reason: DropReason, source: String, now: ContinuousClock.Instant) -> Bool {
        if started == nil { started = now }
        summary.counts[reason, default: 0] += 1
        if summary.sources.count < 64 { summary.sources.insert(source) }
        return logged.insert(reason).inserted
    }

    /// The drops of the interval that ended, if it ended and there were any beyond the ones logged.
    mutating func close(now: ContinuousClock.Instant, force: Bool = false) -> Summary? {
        guard let started, force || now - started >= interval else { return nil }
        let ended = summary
        summary = Summary()
        logged = []
        self.started = nil
        return ended.counts.values.reduce(0, +) > ended.counts.count ? ended : nil
    }
}

/// Logs dropped packets through a `DropTally`, and writes each interval's summary line.
public final class DropLog: Service, Sendable {
    private let tally: Mutex<DropTally>
    private let logger: Logger
    private let clock: any Clock<Duration>

    public init(interval: Duration = .seconds(10), clock: any Clock<Duration> = ContinuousClock(), logger: Logger) {
        tally = Mutex(DropTally(interval: interval))
        self.clock = clock
        self.logger = logger
    }

    /// Counts a drop; logs it in full when it is the first of its reason in this interval.
    func note(_ reason: DropReason, detail: String, source: String, listener: String, total: Int) {
        guard !reason.isExpected else {
            logger.debug("dropped packet", metadata: ["reason": "\(reason)", "detail": "\(detail)", "source": "\(source)", "dropped-total": "\(total)"])
            return
        }
        guard tally.withLock({ $0.note(reason, source: source, now: .now) }) else { return }
        logger.warning("dropped packet", metadata: [
            "reason": "\(reason)", "detail": "\(detail)", "source": "\(source)", "listener": "\(listener)", "dropped-total": "\(total)",
            "note": "further drops for this reason are summed up every \(tally.withLock { $0.interval })",
        ])
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

    func flush(force: Bool = false) {
        guard let summary = tally.withLock({ $0.close(now: .now, force: force) }) else { return }
        var metadata: Logger.Metadata = ["sources": "\(summary.sources.count)\(summary.sources.count == 64 ? "+" : "")"]
        for (reason, count) in summary.counts { metadata["\(reason)"] = "\(count)" }
        logger.warning("dropped packets in the last interval", metadata: metadata)
    }
}
