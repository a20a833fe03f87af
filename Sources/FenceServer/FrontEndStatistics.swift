import FenceCore
import FenceWire
import Metrics
import Synchronization

/// What became of a request that reached its client.
public enum RequestOutcome: Sendable, Hashable, CustomStringConvertible {
    /// The backend's answer to an action, `monitor` or an operation it does not carry out.
    case done(FenceOutcome)
    /// `list`: so many domains sent.
    case listed(Int)
    /// The deadline passed before the request could run: not executed, not answered.
    case expired
    /// Another request named the same call-back endpoint before this one ran: not executed.
    case conflicted

    /// The `outcome` label of the counters.
    public var label: String {
        switch self {
        case .done(.success): "success"
        case .done(.off): "off"
        case .done(.failed): "failed"
        case .done(.denied): "denied"
        case .listed: "listed"
        case .expired: "expired"
        case .conflicted: "conflict"
        }
    }

    /// The `reason` label: why it failed, empty otherwise.
    public var reason: String {
        if case .done(.failed(let failure)) = self { return failure.code.rawValue }
        return ""
    }

    public var description: String {
        switch self {
        case .done(let outcome): outcome.description
        case .listed(let count): "listed-\(count)"
        case .expired, .conflicted: label
        }
    }
}

/// Counters of the front end: every dropped packet by reason, every answered request by operation
/// and outcome. Kept here for logs and tests, and counted through swift-metrics for the endpoint.
public final class FrontEndStatistics: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var dropped: [DropReason: Int] = [:]
        /// By `"operation/outcome"`, for the tests and the logs.
        public var answered: [String: Int] = [:]

        public var totalDropped: Int { dropped.values.reduce(0, +) }
    }

    private struct Instruments {
        var requests: [String: Counter] = [:]
        var durations: [FenceOperation: Timer] = [:]
    }

    private let counters = Mutex(Snapshot())
    /// Made once per label set: a swift-metrics handle is cheap to use, not to make.
    private let dropCounters: [DropReason: Counter]
    private let instruments = Mutex(Instruments())

    public init() {
        dropCounters = Dictionary(uniqueKeysWithValues: DropReason.allCases.map {
            ($0, Counter(label: "fence_dropped_packets_total", dimensions: [("reason", $0.rawValue)]))
        })
    }

    /// Counts one dropped packet; returns how many were dropped for this reason so far.
    @discardableResult
    public func dropped(_ reason: DropReason) -> Int {
        dropCounters[reason]?.increment()
        return counters.withLock { counters in
            counters.dropped[reason, default: 0] += 1
            return counters.dropped[reason]!
        }
    }

    /// Counts one request by operation and outcome, with how long it took from its first packet.
    public func answered(operation: FenceOperation, outcome: RequestOutcome, duration: Duration) {
        let name = "\(operation)/\(outcome.label)"
        let (counter, timer) = instruments.withLock { instruments in
            let counter = instruments.requests[name + "/" + outcome.reason] ?? {
                let made = Counter(label: "fence_requests_total", dimensions: [("op", operation.description), ("outcome", outcome.label), ("reason", outcome.reason)])
                instruments.requests[name + "/" + outcome.reason] = made
                return made
            }()
            let timer = instruments.durations[operation] ?? {
                let made = Timer(label: "fence_request_duration_seconds", dimensions: [("op", operation.description)])
                instruments.durations[operation] = made
                return made
            }()
            return (counter, timer)
        }
        counter.increment()
        timer.record(duration: duration)
        counters.withLock { $0.answered[name, default: 0] += 1 }
    }

    public var snapshot: Snapshot { counters.withLock { $0 } }
}
