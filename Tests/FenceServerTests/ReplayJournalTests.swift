import DropReporting
import FenceWire
import Foundation
import Logging
import Synchronization
import Testing
import TestSupport
@testable import FenceServer

@Suite("The journal of seen packets")
struct ReplayJournalTests {
    static let key = FenceKey(fileContents: Array("replay-guard-key".utf8))
    let logger = Logger(label: "replay-test")

    func packet(_ seqno: UInt32) throws -> FenceRequest {
        var request = try FenceRequest(operation: .status, hash: .sha256, domain: "vm1", callback: CallbackAddress("10.0.0.2"), port: 1229, seqno: seqno)
        request.sign(key: Self.key, random: (0..<6).map { _ in .random(in: .min ... .max) })
        return request
    }

    final class FakeWallClock: Sendable {
        let seconds = Atomic<UInt64>(1_000_000)
        var clock: WallSeconds { WallSeconds { self.seconds.load(ordering: .relaxed) } }
    }

    @Test("a packet seen before a restart is still a replay after it")
    func survivesRestart() throws {
        let directory = try TemporaryDirectory(prefix: "fr-replay")
        let packets = try (0..<50).map(packet)
        do {
            let guardian = try ReplayJournal(directory: directory.url.path, logger: logger)
            #expect(packets.allSatisfy(guardian.firstSighting))
            #expect(!guardian.firstSighting(of: packets[7]))
            guardian.persist()
        }
        let restarted = try ReplayJournal(directory: directory.url.path, logger: logger)
        #expect(restarted.count == 50)
        #expect(packets.allSatisfy { !restarted.firstSighting(of: $0) })
        #expect(restarted.firstSighting(of: try packet(99)))
    }

    @Test("the journal is rewritten when it has grown to twice what is remembered, and forgets what is too old")
    func compaction() throws {
        let directory = try TemporaryDirectory(prefix: "fr-replay")
        let wall = FakeWallClock()
        let guardian = try ReplayJournal(directory: directory.url.path, capacity: 10, lifetime: 3600, clock: wall.clock, logger: logger)
        for seqno in 0..<25 {
            _ = guardian.firstSighting(of: try packet(UInt32(seqno)))
            guardian.persist()
        }
        let size = try #require(try FileManager.default.attributesOfItem(atPath: directory.path("seen-packets"))[.size] as? Int)
        #expect(size <= 20 * ReplayJournal.recordLength, "\(size) bytes")
        wall.seconds.store(1_000_000 + 7200, ordering: .relaxed)
        let later = try ReplayJournal(directory: directory.url.path, capacity: 10, lifetime: 3600, clock: wall.clock, logger: logger)
        #expect(later.count == 0, "two hours later, an hour's memory is empty")
    }

    @Test("a packet is remembered at once and written by persist (or once enough wait), each record once")
    func persist() throws {
        let directory = try TemporaryDirectory(prefix: "fr-replay")
        let guardian = try ReplayJournal(directory: directory.url.path, logger: logger)
        func size() throws -> Int { try #require(try FileManager.default.attributesOfItem(atPath: directory.path("seen-packets"))[.size] as? Int) }
        let first = try packet(1)
        #expect(guardian.firstSighting(of: first))
        #expect(!guardian.firstSighting(of: first), "remembered before it is written")
        #expect(try size() == 0)
        guardian.persist()
        #expect(try size() == ReplayJournal.recordLength)
        guardian.persist()
        #expect(try size() == ReplayJournal.recordLength, "nothing written twice")
        for seqno in 2...UInt32(ReplayJournal.pendingLimit) { _ = guardian.firstSighting(of: try packet(seqno)) }
        #expect(try size() == ReplayJournal.recordLength, "\(ReplayJournal.pendingLimit - 1) waiting")
        _ = guardian.firstSighting(of: try packet(1000))
        #expect(try size() == (ReplayJournal.pendingLimit + 1) * ReplayJournal.recordLength, "written once the limit is reached")
        let restarted = try ReplayJournal(directory: directory.url.path, logger: logger)
        #expect(restarted.count == ReplayJournal.pendingLimit + 1)
    }

    @Test("a torn last record (a crash during a write) is ignored, the rest restored")
    func tornRecord() throws {
        let directory = try TemporaryDirectory(prefix: "fr-replay")
        let first = try packet(1)
        do {
            let guardian = try ReplayJournal(directory: directory.url.path, logger: logger)
            _ = guardian.firstSighting(of: first)
            guardian.persist()
        }
        let handle = try FileHandle(forWritingTo: directory.url.appendingPathComponent("seen-packets"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([1, 2, 3]))
        try handle.close()
        let restarted = try ReplayJournal(directory: directory.url.path, logger: logger)
        #expect(restarted.count == 1)
        #expect(!restarted.firstSighting(of: first))
    }

    @Test("a state directory that cannot be written stops the start, naming the file")
    func unwritable() throws {
        #expect(throws: ReplayJournalError.self) {
            _ = try ReplayJournal(directory: "/proc/no-such-place", logger: logger)
        }
    }
}

@Suite("Drop tally")
struct DropTallyTests {
    @Test("the first drop of each reason is logged, the rest summed up once the interval ends")
    func tally() {
        let start = ContinuousClock.now
        var tally = DropTally<DropReason>(interval: .seconds(10))
        #expect(tally.note(.digestMismatch, source: "a", now: start) == true)
        #expect(tally.note(.digestMismatch, source: "b", now: start) == false)
        #expect(tally.note(.replay, source: "a", now: start) == true)
        for _ in 0..<1000 { _ = tally.note(.digestMismatch, source: "a", now: start) }
        #expect(tally.close(now: start + .seconds(5)) == nil, "the interval is not over")
        let summary = tally.close(now: start + .seconds(10))
        #expect(summary?.counts == [.digestMismatch: 1002, .replay: 1])
        #expect(summary?.sources == ["a", "b"])
        #expect(tally.note(.digestMismatch, source: "a", now: start + .seconds(11)) == true, "a new interval logs again")
        #expect(tally.close(now: start + .seconds(30)) == nil, "nothing beyond what was logged")
    }
}
