/// What identifies one client invocation: the reference's history key. Every copy (one per client
/// address) and every retransmission of one `fence_xvm` run shares it.
public struct RequestKey: Hashable, Sendable, CustomStringConvertible {
    public let operation: FenceOperation
    public let seqno: UInt32
    /// Compared case-insensitively, as the reference does.
    public let domain: String

    public init(_ request: FenceRequest) {
        self.operation = request.operation
        self.seqno = request.seqno
        self.domain = request.domain.lowercased()
    }

    public var description: String { "\(operation)/\(seqno)/\(domain)" }
}

/// A place the daemon may call back for a multicast request.
public struct CallbackCandidate: Hashable, Sendable {
    public let address: CallbackAddress
    public let port: UInt16
    /// The packet's address equals the UDP source: the copy that came straight from the client.
    public let matchesSource: Bool

    public init(address: CallbackAddress, port: UInt16, matchesSource: Bool) {
        self.address = address
        self.port = port
        self.matchesSource = matchesSource
    }
}

/// The duplicate filter: merges the copies and retransmissions of one request, so that it is called
/// back and executed once, and remembers finished requests for a window (≥ 60 s, the reference 10 s).
///
/// Time is passed in, never read here.
public struct RequestHistory: Sendable {
    public enum Admission: Equatable, Sendable {
        /// The first copy: the caller owns the request from here on. `firstSeen` dates the deadline.
        case new(firstSeen: ContinuousClock.Instant)
        /// A retransmission after every call-back failed: the caller owns the request again,
        /// with the deadline of its first copy.
        case retry(firstSeen: ContinuousClock.Instant)
        /// Another copy of a request still gathering its candidates; its address was added.
        case merged
        /// A copy of a request under way or finished: drop it.
        case duplicate
        /// Too many requests remembered at once: drop it.
        case full
    }

    private enum Phase: Sendable {
        case gathering([CallbackCandidate])
        case inProgress
        case callbackFailed(at: ContinuousClock.Instant)
        case finished(at: ContinuousClock.Instant)
    }

    private struct Entry: Sendable {
        var firstSeen: ContinuousClock.Instant
        var phase: Phase
    }

    public let window: Duration
    public let capacity: Int
    private var entries: [RequestKey: Entry] = [:]
    private var lastPurge: ContinuousClock.Instant?

    public init(window: Duration = .seconds(60), capacity: Int = 65_536) {
        self.window = window
        self.capacity = capacity
    }

    public var count: Int { entries.count }

    /// Admits one copy of a request; `candidate` is nil for requests that arrive on a stream.
    public mutating func admit(_ key: RequestKey, candidate: CallbackCandidate?, now: ContinuousClock.Instant) -> Admission {
        purgeIfDue(now: now)
        guard var entry = entries[key] else {
            guard entries.count < capacity else { return .full }
            entries[key] = Entry(firstSeen: now, phase: .gathering(candidate.map { [$0] } ?? []))
            return .new(firstSeen: now)
        }
        switch entry.phase {
        case .gathering(var candidates):
            if let candidate, !candidates.contains(candidate) {
                candidates.append(candidate)
                entry.phase = .gathering(candidates)
                entries[key] = entry
            }
            return .merged
        case .callbackFailed:
            entry.phase = .gathering(candidate.map { [$0] } ?? [])
            entries[key] = entry
            return .retry(firstSeen: entry.firstSeen)
        case .inProgress, .finished:
            return .duplicate
        }
    }

    /// Ends the gathering: returns the candidates, those matching their UDP source first, the rest
    /// in arrival order. Later copies count as duplicates.
    public mutating func beginCallback(_ key: RequestKey) -> [CallbackCandidate] {
        guard var entry = entries[key], case .gathering(let candidates) = entry.phase else { return [] }
        entry.phase = .inProgress
        entries[key] = entry
        return candidates.filter(\.matchesSource) + candidates.filter { !$0.matchesSource }
    }

    /// Whether a gathering request already holds a candidate that matches its source.
    public func hasSourceMatch(_ key: RequestKey) -> Bool {
        guard case .gathering(let candidates)? = entries[key]?.phase else { return false }
        return candidates.contains(where: \.matchesSource)
    }

    /// Records that no call-back reached the client: a retransmission may try again.
    public mutating func callbackFailed(_ key: RequestKey, now: ContinuousClock.Instant) {
        entries[key]?.phase = .callbackFailed(at: now)
    }

    /// Records that the request was answered (whatever the answer): copies are dropped for `window`.
    public mutating func finished(_ key: RequestKey, now: ContinuousClock.Instant) {
        entries[key]?.phase = .finished(at: now)
    }

    private mutating func purgeIfDue(now: ContinuousClock.Instant) {
        if let lastPurge, now - lastPurge < .seconds(1) { return }
        lastPurge = now
        let horizon = now - window
        entries = entries.filter { _, entry in
            switch entry.phase {
            case .gathering, .inProgress: true
            case .callbackFailed(let at), .finished(let at): at > horizon
            }
        }
    }
}
