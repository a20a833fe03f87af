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

/// An address and port a client listens on for its call-back.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public let address: CallbackAddress
    public let port: UInt16

    public init(address: CallbackAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    public var description: String { "\(address):\(port)" }
}

/// A place the daemon may call back for a multicast request.
public struct CallbackCandidate: Hashable, Sendable {
    public let endpoint: Endpoint
    /// The packet's address equals the UDP source: the copy that came straight from the client.
    public let matchesSource: Bool

    public init(address: CallbackAddress, port: UInt16, matchesSource: Bool) {
        self.endpoint = Endpoint(address: address, port: port)
        self.matchesSource = matchesSource
    }

    public var address: CallbackAddress { endpoint.address }
    public var port: UInt16 { endpoint.port }
}

/// The limits of the request history: how long requests live and are remembered, and the shares
/// that keep one requester from crowding out the others.
public struct HistoryLimits: Sendable, Equatable {
    /// A request lives this long from its first copy; past it, it is never called back.
    public var requestTimeout: Duration = .seconds(20)
    /// An answered request's copies are dropped this long after its client took the call-back, by
    /// when each reached the host; a request with its key after that is new. The client sent
    /// every copy before it took the call-back, so copies come within the network's delay; the
    /// seqno is the client's microseconds (clustered on scheduler ticks under load), so a longer
    /// window drops a new request that drew an answered one's seqno until the window ends.
    public var window: Duration = .seconds(2)
    /// A request is remembered this long past its deadline. One not answered (refused, its
    /// call-back failed, abandoned) has its copies dropped as long: its client sends them until it
    /// gives up (fence_xvm: 30 s).
    public var retransmissionHorizon: Duration = .seconds(60)
    /// Requests remembered at once, from everyone.
    public var capacity = 65_536
    /// Requests not yet answered (gathering, under way, waiting for a retry, refused) from one
    /// source address at once. Answered ones do not count: a busy guest is not a flood; they are
    /// bounded by `capacity`, which gives up the largest holder's first.
    public var perSource = 256
    /// Call-backs under way at once, from everyone and from one source.
    public var callbacks = 256
    public var callbacksPerSource = 8
    /// After a failed call-back, a new copy may try again after this long, this many times in all.
    public var retryInterval: Duration = .milliseconds(500)
    public var attempts = 16
    /// Two different requests naming one endpoint this close together are both refused.
    public var conflictWindow: Duration = .seconds(1)

    public init() {}
}

/// The history of requests: merges the copies and retransmissions of one request so that it is
/// called back and executed once; remembers settled requests; keeps one endpoint to one request
/// at a time; and shares its room fairly between source addresses.
///
/// Time is passed in, never read here.
public struct RequestHistory: Sendable {
    public enum Admission: Equatable, Sendable {
        /// The first copy: the caller owns the request from here on, until `deadline`.
        case new(deadline: ContinuousClock.Instant)
        /// A copy after every call-back failed: the caller owns the request again.
        case retry(deadline: ContinuousClock.Instant)
        /// Another copy of a request still gathering its candidates; its address was added.
        case merged
        /// A copy of a request under way, answered or refused: drop it.
        case duplicate
        /// A copy after a failed call-back, too soon or once too often: drop it.
        case retryLimited
        /// A copy of a request past its deadline: drop it.
        case expired
        /// Another request names the same endpoint: this one is refused (and so is the other,
        /// unless exactly one of them came from the address it names).
        case conflict
        /// This source holds its whole share of the history.
        case overQuota
        /// The history is full of requests under way.
        case full
    }

    /// What `beginCallback` hands the caller.
    public enum Callback: Equatable, Sendable {
        /// Call these back, in this order.
        case candidates([CallbackCandidate])
        /// Too many call-backs under way (in all, or from this source): try with a later copy.
        case busy
        /// The request was refused meanwhile (a conflict): do not call back.
        case refused
    }

    private enum Phase: Sendable, Equatable {
        case gathering([CallbackCandidate])
        case inProgress
        /// Every call-back failed; a new copy may retry.
        case waiting
        case finished
        /// Refused for a conflict: never called back or executed.
        case refused
    }

    private struct Entry: Sendable {
        let deadline: ContinuousClock.Instant
        let source: String
        var phase: Phase
        /// When the entry entered its phase.
        var since: ContinuousClock.Instant
        var lastCopy: ContinuousClock.Instant
        var lastAttempt: ContinuousClock.Instant
        var attempts = 1
        var endpoints: [Endpoint] = []
        /// The endpoints a copy named from that very address (an IPv4 client's own copies do).
        var fromItself: [Endpoint] = []
        /// A task holds one of the call-back slots for this request, until it settles it; a
        /// refusal meanwhile does not give the slot back, since the task is still at work.
        var holdsSlot = false

        var isOpen: Bool { phase != .finished }
        /// Nothing is at work on it: it may give up its room.
        var isSettled: Bool {
            guard !holdsSlot else { return false }
            switch phase {
            case .waiting, .finished, .refused: return true
            case .gathering, .inProgress: return false
            }
        }
    }

    /// The keys one source holds, oldest first, with removals made lazily: a removed key stays
    /// in `keys` until the list is compacted, so that removing is O(1) amortised.
    private struct SourceKeys: Sendable {
        var keys: [RequestKey] = []
        var head = 0
        var live = 0
        /// Not answered: what the per-source share counts.
        var open = 0

        /// Adds a new (open) request; returns how many are live now.
        mutating func added(_ key: RequestKey) -> Int {
            keys.append(key)
            live += 1
            open += 1
            return live
        }
    }

    public private(set) var limits: HistoryLimits
    private var entries: [RequestKey: Entry] = [:]
    /// The open requests (neither answered nor refused) that named each endpoint: the only ones
    /// that can be rivals.
    private var byEndpoint: [Endpoint: [RequestKey]] = [:]
    private var bySource: [String: SourceKeys] = [:]
    /// The sources by how many keys they hold, so that a full history gives up room from the
    /// largest holder at once.
    private var sourcesByCount: [Int: Set<String>] = [:]
    private var largestCount = 0
    private var callbacksUnderWay: [String: Int] = [:]
    private var totalCallbacks = 0
    /// Requests given up to make room, remembered by their hash (as many as the history holds)
    /// with the moment their copies stop being dropped, so that a late copy of one is not taken
    /// for a new request, and a new request with its key is not dropped for ever.
    private var evicted: [Int: ContinuousClock.Instant] = [:]
    private var evictionOrder: [Int] = []
    private var evictionHead = 0
    private var lastPurge: ContinuousClock.Instant?

    public init(limits: HistoryLimits = HistoryLimits()) {
        self.limits = limits
    }

    public var count: Int { entries.count }

    /// New limits (a reloaded `request_timeout`), for requests admitted from now on.
    public mutating func update(limits: HistoryLimits) {
        self.limits = limits
    }

    /// Admits one copy of a request from `source`; `candidate` is nil for requests that arrive on a stream.
    public mutating func admit(_ key: RequestKey, candidate: CallbackCandidate?, source: String, now: ContinuousClock.Instant) -> Admission {
        purgeIfDue(now: now)
        guard let entry = entries[key] else {
            return admitNew(key, candidate: candidate, source: source, now: now)
        }
        switch entry.phase {
        case .finished where now >= copiesDropped(entry):
            remove(key)
            return admitNew(key, candidate: candidate, source: source, now: now)
        case .finished, .refused: return .duplicate
        case .waiting where now >= entry.deadline: return .expired
        default: break
        }
        if let candidate { note(candidate, for: key) }
        entries[key]!.lastCopy = now
        if let candidate, conflicts(key, at: candidate.endpoint, now: now) { return .conflict }
        switch entry.phase {
        case .gathering(var candidates):
            if let candidate, !candidates.contains(candidate) {
                candidates.append(candidate)
                entries[key]!.phase = .gathering(candidates)
            }
            return .merged
        case .waiting:
            guard entry.attempts < limits.attempts, now - entry.lastAttempt >= limits.retryInterval else { return .retryLimited }
            entries[key]!.attempts += 1
            entries[key]!.lastAttempt = now
            entries[key]!.phase = .gathering(candidate.map { [$0] } ?? [])
            entries[key]!.since = now
            return .retry(deadline: entry.deadline)
        case .inProgress, .finished, .refused:
            return .duplicate
        }
    }

    private mutating func admitNew(_ key: RequestKey, candidate: CallbackCandidate?, source: String, now: ContinuousClock.Instant) -> Admission {
        if let until = evicted[key.hashValue], now < until { return .duplicate }
        if bySource[source, default: SourceKeys()].open >= limits.perSource { return .overQuota }
        if entries.count >= limits.capacity, !evictFromLargestSource() { return .full }
        entries[key] = Entry(deadline: now + limits.requestTimeout, source: source, phase: .gathering(candidate.map { [$0] } ?? []), since: now, lastCopy: now, lastAttempt: now)
        if let candidate { note(candidate, for: key) }
        // In place: a copy taken out of the dictionary would copy the whole key list on append,
        // making every request of a busy source cost as much as all it has sent.
        let live = bySource[source, default: SourceKeys()].added(key)
        sourceCountChanged(source, from: live - 1, to: live)
        if let candidate, conflicts(key, at: candidate.endpoint, now: now) { return .conflict }
        return .new(deadline: now + limits.requestTimeout)
    }

    private mutating func note(_ candidate: CallbackCandidate, for key: RequestKey) {
        let endpoint = candidate.endpoint
        if candidate.matchesSource, !entries[key]!.fromItself.contains(endpoint) { entries[key]!.fromItself.append(endpoint) }
        guard !entries[key]!.endpoints.contains(endpoint) else { return }
        entries[key]!.endpoints.append(endpoint)
        byEndpoint[endpoint, default: []].append(key)
    }

    /// Whether another request is using `endpoint` right now, or named it within the conflict
    /// window. The client there cannot tell their answers apart, so all of them are refused,
    /// except when exactly one came from the address it names: a client's own copies do (IPv4),
    /// a replay from elsewhere does not. Returns whether `key` was refused.
    private mutating func conflicts(_ key: RequestKey, at endpoint: Endpoint, now: ContinuousClock.Instant) -> Bool {
        guard let named = byEndpoint[endpoint], named.count > 1 else { return false }
        let rivals = named.filter { other in
            guard other != key, let entry = entries[other] else { return false }
            switch entry.phase {
            case .gathering, .inProgress: return true
            case .waiting: return now - entry.lastCopy < limits.conflictWindow && now < entry.deadline
            case .finished, .refused: return false
            }
        }
        guard !rivals.isEmpty else { return false }
        let claimants = rivals + [key]
        let fromItself = claimants.filter { entries[$0]?.fromItself.contains(endpoint) == true }
        let keeper = fromItself.count == 1 ? fromItself[0] : nil
        for claimant in claimants where claimant != keeper { refuse(claimant, now: now) }
        return key != keeper
    }

    private mutating func refuse(_ key: RequestKey, now: ContinuousClock.Instant) {
        guard let entry = entries[key] else { return }
        entries[key]!.phase = .refused
        entries[key]!.since = now
        unindex(key, entry.endpoints)
    }

    /// Ends the gathering: returns the candidates, those matching their UDP source first, the rest
    /// in arrival order, unless too many call-backs are under way. Later copies count as duplicates.
    /// The caller holds a call-back slot until it settles the request (`finished`, `callbackFailed`).
    public mutating func beginCallback(_ key: RequestKey, now: ContinuousClock.Instant) -> Callback {
        guard let entry = entries[key], case .gathering(let candidates) = entry.phase else { return .refused }
        guard totalCallbacks < limits.callbacks, callbacksUnderWay[entry.source, default: 0] < limits.callbacksPerSource else {
            entries[key]!.phase = .waiting
            entries[key]!.since = now
            return .busy
        }
        totalCallbacks += 1
        callbacksUnderWay[entry.source, default: 0] += 1
        entries[key]!.holdsSlot = true
        entries[key]!.phase = .inProgress
        entries[key]!.since = now
        return .candidates(candidates.filter(\.matchesSource) + candidates.filter { !$0.matchesSource })
    }

    /// Whether a gathering request already holds a candidate that matches its source.
    public func hasSourceMatch(_ key: RequestKey) -> Bool {
        guard case .gathering(let candidates)? = entries[key]?.phase else { return false }
        return candidates.contains(where: \.matchesSource)
    }

    /// Whether the request may still call back and run: under way, not refused for a conflict since.
    public func mayExecute(_ key: RequestKey) -> Bool {
        entries[key]?.phase == .inProgress
    }

    /// Records that no call-back reached the client: a later copy may try again.
    public mutating func callbackFailed(_ key: RequestKey, now: ContinuousClock.Instant) {
        settle(key, as: .waiting, now: now)
    }

    /// Records that the request was answered (whatever the answer): its copies are dropped for
    /// the window from `clientTook`, when its client had taken the call-back (it sends no copy
    /// after that).
    public mutating func finished(_ key: RequestKey, clientTook: ContinuousClock.Instant) {
        settle(key, as: .finished, now: clientTook)
    }

    /// The task is done with the request: its slot goes back; a request still under way takes
    /// `phase` (a refused one stays refused).
    private mutating func settle(_ key: RequestKey, as phase: Phase, now: ContinuousClock.Instant) {
        guard let entry = entries[key], entry.holdsSlot else { return }
        entries[key]!.holdsSlot = false
        callbackEnded(entry.source)
        guard entry.phase == .inProgress else { return }
        entries[key]!.phase = phase
        entries[key]!.since = now
        if phase == .finished {
            bySource[entry.source]?.open -= 1
            unindex(key, entry.endpoints)
        }
    }

    private mutating func unindex(_ key: RequestKey, _ endpoints: [Endpoint]) {
        for endpoint in endpoints {
            byEndpoint[endpoint]?.removeAll { $0 == key }
            if byEndpoint[endpoint]?.isEmpty == true { byEndpoint[endpoint] = nil }
        }
    }

    private mutating func callbackEnded(_ source: String) {
        totalCallbacks -= 1
        callbacksUnderWay[source, default: 1] -= 1
        if callbacksUnderWay[source] == 0 { callbacksUnderWay[source] = nil }
    }

    // MARK: - Room

    /// Gives up the oldest settled request of the source that holds the most, and remembers
    /// that it did.
    private mutating func evictFromLargestSource() -> Bool {
        var count = largestCount
        while count > 0 {
            for source in sourcesByCount[count] ?? [] {
                guard var keys = bySource[source] else { continue }
                // Skip what was removed already; the first live settled key goes.
                while keys.head < keys.keys.count, entries[keys.keys[keys.head]]?.source != source { keys.head += 1 }
                bySource[source] = keys
                let settled = keys.keys[keys.head...].first { key in
                    guard let entry = entries[key] else { return false }
                    return entry.source == source && entry.isSettled
                }
                if let key = settled, let entry = entries[key] {
                    remove(key)
                    remember(evicted: key, until: copiesDropped(entry))
                    return true
                }
            }
            count -= 1
        }
        return false
    }

    private mutating func remember(evicted key: RequestKey, until: ContinuousClock.Instant) {
        let hash = key.hashValue
        guard evicted.updateValue(until, forKey: hash) == nil else { return }
        evictionOrder.append(hash)
        if evictionOrder.count - evictionHead > limits.capacity {
            evicted[evictionOrder[evictionHead]] = nil
            evictionHead += 1
        }
        if evictionHead > 1024, evictionHead * 2 > evictionOrder.count {
            evictionOrder.removeFirst(evictionHead)
            evictionHead = 0
        }
    }

    private mutating func remove(_ key: RequestKey) {
        guard let entry = entries.removeValue(forKey: key) else { return }
        if entry.holdsSlot { callbackEnded(entry.source) }
        unindex(key, entry.endpoints)
        guard var keys = bySource[entry.source] else { return }
        keys.live -= 1
        if entry.isOpen { keys.open -= 1 }
        if keys.live == 0 {
            bySource[entry.source] = nil
        } else {
            if keys.keys.count - keys.head > 2 * keys.live + 16 {
                var seen: Set<RequestKey> = []
                keys.keys = keys.keys[keys.head...].filter { entries[$0]?.source == entry.source && seen.insert($0).inserted }
                keys.head = 0
            }
            bySource[entry.source] = keys
        }
        sourceCountChanged(entry.source, from: keys.live + 1, to: keys.live)
    }

    private mutating func sourceCountChanged(_ source: String, from old: Int, to new: Int) {
        if old > 0 {
            sourcesByCount[old]?.remove(source)
            if sourcesByCount[old]?.isEmpty == true { sourcesByCount[old] = nil }
        }
        if new > 0 { sourcesByCount[new, default: []].insert(source) }
        if new > largestCount { largestCount = new }
        while largestCount > 0, sourcesByCount[largestCount] == nil { largestCount -= 1 }
    }

    /// Until when copies of `entry` are dropped: an answered request's for the window after its
    /// client took the call-back, any other's for the retransmission horizon past its deadline.
    private func copiesDropped(_ entry: Entry) -> ContinuousClock.Instant {
        entry.phase == .finished ? entry.since + limits.window : max(entry.deadline, entry.since) + limits.retransmissionHorizon
    }

    /// A request leaves the history `retransmissionHorizon` after its deadline and after it
    /// entered its phase (a request whose owner vanished cannot hold its room for ever). An
    /// answered one stays as long, though a request with its key is new after the window: each
    /// copy is judged by its own arrival, and the time this purge runs with may be another
    /// packet's (another listener's, a stream's), later than a copy still waiting to be read.
    private mutating func purgeIfDue(now: ContinuousClock.Instant) {
        if let lastPurge, now - lastPurge < .seconds(1) { return }
        lastPurge = now
        let gone = entries.compactMap { key, entry in
            now > max(entry.deadline, entry.since) + limits.retransmissionHorizon ? key : nil
        }
        for key in gone { remove(key) }
    }

    /// Whether every count agrees with the requests it counts: for tests and fuzzing.
    public var inconsistency: String? {
        var slots: [String: Int] = [:]
        for entry in entries.values where entry.holdsSlot { slots[entry.source, default: 0] += 1 }
        guard slots == callbacksUnderWay, totalCallbacks == slots.values.reduce(0, +) else {
            return "call-back slots \(callbacksUnderWay) (\(totalCallbacks)) but held \(slots)"
        }
        for (source, keys) in bySource {
            let held = entries.values.filter { $0.source == source }
            guard keys.live == held.count, keys.open == held.filter(\.isOpen).count else {
                return "\(source): \(keys.live) live, \(keys.open) open, but \(held.count) held, \(held.filter(\.isOpen).count) open"
            }
            guard sourcesByCount[keys.live]?.contains(source) == true else { return "\(source) not under its count \(keys.live)" }
        }
        guard Set(entries.values.map(\.source)) == Set(bySource.keys) else { return "sources without keys, or keys without sources" }
        guard largestCount == (bySource.values.map(\.live).max() ?? 0) else { return "largest count \(largestCount)" }
        for (endpoint, keys) in byEndpoint {
            for key in keys {
                guard let entry = entries[key], entry.endpoints.contains(endpoint), entry.phase != .finished, entry.phase != .refused else {
                    return "\(endpoint) indexes \(key), which is not open there"
                }
            }
        }
        return nil
    }
}
