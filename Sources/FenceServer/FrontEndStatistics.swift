import Synchronization

/// Counters of the front end: every dropped packet by reason, every answered request by operation
/// and outcome. Read by logs now and by the metrics endpoint.
public final class FrontEndStatistics: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var dropped: [String: Int] = [:]
        public var answered: [String: Int] = [:]

        public var totalDropped: Int { dropped.values.reduce(0, +) }
    }

    private let counters = Mutex(Snapshot())

    public init() {}

    /// Counts one dropped packet; returns how many were dropped for this reason so far.
    @discardableResult
    public func dropped(_ reason: String) -> Int {
        counters.withLock { counters in
            counters.dropped[reason, default: 0] += 1
            return counters.dropped[reason]!
        }
    }

    public func answered(operation: String, outcome: String) {
        counters.withLock { $0.answered["\(operation)/\(outcome)", default: 0] += 1 }
    }

    public var snapshot: Snapshot { counters.withLock { $0 } }
}
