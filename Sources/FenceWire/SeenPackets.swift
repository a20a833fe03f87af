/// The signed packets a daemon has accepted, remembered by their signatures for a long time (a day
/// by default) and across restarts, so that a captured packet replayed later is dropped instead of
/// being called back.
///
/// fence_xvm fills fresh random bytes into every packet it signs, copies and retransmissions
/// included, so two accepted packets with the same signature are one packet sent twice: a replay.
/// Unsigned packets (hash `none`) carry nothing that could tell them apart and are not remembered.
///
/// Time (seconds since the epoch, so that it means the same after a restart) is passed in.
public struct SeenPackets: Sendable {
    /// The first 16 bytes of a packet's signature.
    public struct Fingerprint: Hashable, Sendable {
        public let high: UInt64
        public let low: UInt64

        public init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }

        /// Nil for an unsigned request.
        public init?(_ request: FenceRequest) {
            guard request.hash != .none else { return nil }
            let start = WireLayout.hash.lowerBound
            self.init(
                high: WireLayout.readLittleEndian(request.bytes, at: start..<(start + 8), as: UInt64.self),
                low: WireLayout.readLittleEndian(request.bytes, at: (start + 8)..<(start + 16), as: UInt64.self)
            )
        }
    }

    /// One remembered packet: when it was first accepted, and its fingerprint.
    public struct Record: Hashable, Sendable {
        public let time: UInt64
        public let fingerprint: Fingerprint

        public init(time: UInt64, fingerprint: Fingerprint) {
            self.time = time
            self.fingerprint = fingerprint
        }
    }

    /// At most this many packets are remembered; the oldest are forgotten first.
    public let capacity: Int
    /// Packets older than this (in seconds) are forgotten.
    public let lifetime: UInt64
    private var known: Set<Fingerprint> = []
    /// Oldest first: `order[head...]` are remembered.
    private var order: [Record] = []
    private var head = 0

    public init(capacity: Int = 262_144, lifetime: UInt64 = 86_400) {
        self.capacity = capacity
        self.lifetime = lifetime
    }

    public var count: Int { known.count }

    /// What is remembered, oldest first (for writing it out).
    public var records: ArraySlice<Record> { order[head...] }

    /// Records a packet; false if it was seen before (a replay).
    public mutating func insert(_ fingerprint: Fingerprint, now: UInt64) -> Bool {
        forget(before: now)
        guard known.insert(fingerprint).inserted else { return false }
        if known.count > capacity, head < order.count {
            known.remove(order[head].fingerprint)
            head += 1
        }
        order.append(Record(time: now, fingerprint: fingerprint))
        compactIfWorthIt()
        return true
    }

    /// Takes back what a previous run wrote, skipping what is too old and repeats. A record dated
    /// later than now (the clock was ahead then, or is behind now: a bad RTC at boot) counts as
    /// seen now; forgetting it would make its packet replayable.
    public mutating func restore(_ records: some Sequence<Record>, now: UInt64) {
        for written in records {
            let record = Record(time: min(written.time, now), fingerprint: written.fingerprint)
            guard now - record.time < lifetime, known.insert(record.fingerprint).inserted else { continue }
            order.append(record)
            if known.count > capacity {
                known.remove(order[head].fingerprint)
                head += 1
            }
        }
        compactIfWorthIt()
    }

    private mutating func forget(before now: UInt64) {
        while head < order.count, order[head].time <= now, now - order[head].time >= lifetime {
            known.remove(order[head].fingerprint)
            head += 1
        }
    }

    private mutating func compactIfWorthIt() {
        guard head > 1024, head * 2 > order.count else { return }
        order.removeFirst(head)
        head = 0
    }
}
