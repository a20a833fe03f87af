#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FenceWire
import Logging
import Synchronization

/// The wall clock in whole seconds since the epoch: what a remembered packet is dated with, so
/// that its age means the same after a restart.
public struct WallSeconds: Sendable {
    private let read: @Sendable () -> UInt64

    public init(_ read: @escaping @Sendable () -> UInt64) {
        self.read = read
    }

    public static let system = WallSeconds { UInt64(max(0, time(nil))) }

    public var now: UInt64 { read() }
}

/// Why the packet journal cannot be used.
public struct ReplayJournalError: Error, CustomStringConvertible {
    public let path: String
    public let detail: String
    public var description: String { "\(path): \(detail)" }
}

/// Remembers every accepted signed packet (`SeenPackets`) and keeps a journal of them in the state
/// directory, so that a restart forgets nothing: one 24-byte record per packet (seconds since
/// the epoch and the fingerprint, little-endian), appended by `persist` before the request it
/// carries can run, and rewritten whole when it has grown to twice what is remembered.
public final class ReplayJournal: Sendable {
    private struct State: ~Copyable, Sendable {
        var seen: SeenPackets
        var descriptor: Int32
        var appended: Int
        /// Remembered, not yet in the journal.
        var pending: [SeenPackets.Record] = []
    }

    /// Packets remembered and not yet written stay at most this many: `firstSighting` writes
    /// them when nobody else did (packets that reach no call-back).
    static let pendingLimit = 64

    public static let recordLength = 24

    /// Nil for a guard that keeps no journal.
    public let path: String?
    private let state: Mutex<State>
    private let clock: WallSeconds
    private let logger: Logger
    private let failures = Atomic<Int>(0)

    /// Reads the journal `directory/seen-packets` (made if missing) and keeps appending to it.
    public init(directory: String, capacity: Int = 262_144, lifetime: UInt64 = 86_400, clock: WallSeconds = .system, logger: Logger) throws(ReplayJournalError) {
        let path = directory + "/seen-packets"
        var seen = SeenPackets(capacity: capacity, lifetime: lifetime)
        seen.restore(try Self.load(path), now: clock.now)
        let descriptor = try Self.rewrite(path, seen.records)
        self.path = path
        self.state = Mutex(State(seen: seen, descriptor: descriptor, appended: 0))
        self.clock = clock
        self.logger = logger
        if seen.count > 0 {
            logger.info("remembering signed packets from before the restart", metadata: ["packets": "\(seen.count)", "journal": "\(path)"])
        }
    }

    /// In memory only: for tests and tools that never restart into the same state.
    public init(inMemoryCapacity capacity: Int = 262_144, lifetime: UInt64 = 86_400, clock: WallSeconds = .system, logger: Logger) {
        path = nil
        state = Mutex(State(seen: SeenPackets(capacity: capacity, lifetime: lifetime), descriptor: -1, appended: 0))
        self.clock = clock
        self.logger = logger
    }

    deinit {
        let path = self.path
        state.withLock { state in
            if let path, !state.pending.isEmpty { _ = Self.writePending(&state, path) }
            if state.descriptor >= 0 { close(state.descriptor) }
        }
    }

    /// True the first time a signed packet is accepted, false for every repeat of it.
    /// Unsigned packets are always new (nothing tells their copies apart). The packet is
    /// remembered at once; its record reaches the journal with the next `persist` (which the
    /// pipeline calls as soon as the packet's call-back is dialled or it is dropped).
    public func firstSighting(of request: FenceRequest) -> Bool {
        guard let fingerprint = SeenPackets.Fingerprint(request) else { return true }
        let now = clock.now
        let path = self.path
        let (fresh, error): (Bool, String?) = state.withLock { state in
            guard state.seen.insert(fingerprint, now: now) else { return (false, nil) }
            guard let path, state.descriptor >= 0 else { return (true, nil) }
            state.pending.append(SeenPackets.Record(time: now, fingerprint: fingerprint))
            return (true, state.pending.count >= Self.pendingLimit ? Self.writePending(&state, path) : nil)
        }
        report(error)
        return fresh
    }

    /// Writes the records of the packets first seen since the last call, and returns once they
    /// are written (or the failure logged). A request runs only after this: a restart then still
    /// knows its packet, and a replay of it is refused. Called once a call-back's SYN has left,
    /// so that the write does not delay it.
    public func persist() {
        guard let path else { return }
        report(state.withLock { state in state.pending.isEmpty ? nil : Self.writePending(&state, path) })
    }

    /// Appends the pending records, or rewrites the journal when it has grown to twice what is
    /// remembered (the pending records are remembered already); returns what went wrong.
    private static func writePending(_ state: inout State, _ path: String) -> String? {
        defer { state.pending.removeAll(keepingCapacity: true) }
        state.appended += state.pending.count
        guard state.appended > state.seen.capacity else { return append(state.pending, to: state.descriptor) }
        // Whether or not the rewrite works, the next one is due after as many records again: a
        // failing disk is not retried on every packet.
        state.appended = 0
        do throws(ReplayJournalError) {
            let descriptor = try rewrite(path, state.seen.records)
            close(state.descriptor)
            state.descriptor = descriptor
            return nil
        } catch {
            // Keep appending to the journal as it is.
            _ = append(state.pending, to: state.descriptor)
            return error.description
        }
    }

    private func report(_ error: String?) {
        if let error {
            // The packet is still remembered until the next restart; say so, but not for every packet.
            let count = failures.add(1, ordering: .relaxed).newValue
            if count == 1 || count.isMultiple(of: 1000) {
                logger.error("cannot write the journal of seen packets; a restart would forget them", metadata: [
                    "journal": "\(path ?? "")", "error": "\(error)", "failures": "\(count)",
                ])
            }
        }
    }

    public var count: Int { state.withLock { $0.seen.count } }

    // MARK: - The file

    /// Appends records (one write, unless the kernel takes fewer bytes); when the disk refuses
    /// the rest, cuts the file back to whole records, so that what follows is read back aligned.
    /// Returns what went wrong, if anything.
    private static func append(_ records: [SeenPackets.Record], to descriptor: Int32) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(records.count * recordLength)
        for record in records { bytes += encode(record) }
        var offset = 0
        var failure: String?
        while offset < bytes.count, failure == nil {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written > 0 {
                offset += written
            } else if written == 0 || errno != EINTR {
                failure = written < 0 ? String(cString: strerror(errno)) : "\(offset) of \(bytes.count) bytes written"
            }
        }
        guard let detail = failure else { return nil }
        var status = stat()
        if fstat(descriptor, &status) == 0, status.st_size % off_t(recordLength) != 0 {
            _ = ftruncate(descriptor, status.st_size - status.st_size % off_t(recordLength))
        }
        return "write: \(detail)"
    }

    static func encode(_ record: SeenPackets.Record) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: recordLength)
        for (offset, value) in [record.time, record.fingerprint.high, record.fingerprint.low].enumerated() {
            for shift in 0..<8 { bytes[offset * 8 + shift] = UInt8(truncatingIfNeeded: value >> (8 * shift)) }
        }
        return bytes
    }

    static func decode(_ bytes: ArraySlice<UInt8>) -> SeenPackets.Record {
        func word(_ index: Int) -> UInt64 {
            (0..<8).reduce(0) { $0 | UInt64(bytes[bytes.startIndex + index * 8 + $1]) << (8 * $1) }
        }
        return SeenPackets.Record(time: word(0), fingerprint: .init(high: word(1), low: word(2)))
    }

    /// Every whole record of the journal; none when there is no journal yet. A torn last record
    /// (a crash during a write) is ignored.
    private static func load(_ path: String) throws(ReplayJournalError) -> [SeenPackets.Record] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            guard errno == ENOENT else { throw ReplayJournalError(path: path, detail: "cannot read: \(String(cString: strerror(errno)))") }
            return []
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ReplayJournalError(path: path, detail: "cannot read: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        return stride(from: 0, to: bytes.count - bytes.count % recordLength, by: recordLength).map { decode(bytes[$0..<($0 + recordLength)]) }
    }

    /// Writes `records` to a new file beside `path`, renames it over `path`, and returns a
    /// descriptor that appends to it.
    private static func rewrite(_ path: String, _ records: ArraySlice<SeenPackets.Record>) throws(ReplayJournalError) -> Int32 {
        let temporary = path + ".new"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw ReplayJournalError(path: temporary, detail: "cannot write: \(String(cString: strerror(errno)))") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(records.count * recordLength)
        for record in records { bytes += encode(record) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard written > 0 else {
                let detail = String(cString: strerror(errno))
                close(descriptor)
                unlink(temporary)
                throw ReplayJournalError(path: temporary, detail: "cannot write: \(detail)")
            }
            offset += written
        }
        guard fsync(descriptor) == 0, rename(temporary, path) == 0 else {
            let detail = String(cString: strerror(errno))
            close(descriptor)
            unlink(temporary)
            throw ReplayJournalError(path: path, detail: "cannot replace: \(detail)")
        }
        return descriptor
    }
}
