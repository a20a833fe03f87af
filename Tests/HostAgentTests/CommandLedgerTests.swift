import FenceBus
@testable import HostAgent
import Synchronization
import Testing

@Suite("Command ledger")
struct CommandLedgerTests {
    /// How many times a command ran, counted from every copy's closure.
    final class Runs: Sendable {
        private let count = Mutex(0)
        func note() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    static func result(_ id: String) -> CommandResult {
        CommandResult(commandID: id, host: "h1", outcome: .success, observed: nil)
    }

    @Test("a command runs once; its copies get its result; once answered only the result is kept, not its run")
    func once() async {
        let ledger = CommandLedger()
        let runs = Runs()
        let execute: @Sendable () async -> CommandResult = {
            runs.note()
            return Self.result("c1")
        }
        let (first, firstRepeated) = await ledger.result(for: "c1", now: .now, execute: execute)
        #expect(first == Self.result("c1") && !firstRepeated)
        // A finished task kept in the ledger holds the memory its run used (14 KB a command).
        #expect(ledger.remembered == (total: 1, running: 0, waiting: 0))
        let (copy, copyRepeated) = await ledger.result(for: "c1", now: .now, execute: execute)
        #expect(copy == first && copyRepeated)
        #expect(runs.value == 1)
    }

    @Test("a copy that arrives while the command runs waits for that run", .timeLimit(.minutes(1)))
    func copyWhileRunning() async {
        let ledger = CommandLedger()
        let (gate, open) = AsyncStream<Void>.makeStream()
        let runs = Runs()
        async let first = ledger.result(for: "c1", now: .now) {
            runs.note()
            for await _ in gate { break }
            return Self.result("c1")
        }
        while ledger.remembered.running == 0 { await Task.yield() }
        async let copy = ledger.result(for: "c1", now: .now) {
            runs.note()
            return Self.result("a second run")
        }
        while ledger.remembered.waiting == 0 { await Task.yield() }
        open.yield()
        open.finish()
        let (a, b) = await (first, copy)
        #expect(a == (Self.result("c1"), false) && b == (Self.result("c1"), true))
        #expect(runs.value == 1)
        #expect(ledger.remembered == (total: 1, running: 0, waiting: 0))
    }

    @Test("a refusal is not remembered; an answered command is forgotten past its retention, a running one is not")
    func refusalAndRetention() async {
        let ledger = CommandLedger(retention: .seconds(10))
        let start = ContinuousClock.now
        let refused = CommandResult(commandID: "c1", host: "h1", outcome: .failed(code: "agent-restarted", message: "not executed"), observed: nil)
        let (answer, _) = await ledger.result(for: "c1", now: start, unlessNew: refused) { Self.result("c1") }
        #expect(answer == refused)
        #expect(ledger.remembered.total == 0)
        let (gate, open) = AsyncStream<Void>.makeStream()
        async let running = ledger.result(for: "slow", now: start) {
            for await _ in gate { break }
            return Self.result("slow")
        }
        _ = await ledger.result(for: "c2", now: start) { Self.result("c2") }
        _ = await ledger.result(for: "c3", now: start + .seconds(5)) { Self.result("c3") }
        #expect(ledger.remembered.total == 3, "nothing is past its retention yet")
        _ = await ledger.result(for: "c4", now: start + .seconds(11)) { Self.result("c4") }
        #expect(ledger.remembered == (total: 3, running: 1, waiting: 0), "c2 forgotten; c3, c4 and the running one kept")
        open.finish()
        _ = await running
    }

    @Test("an answered command is kept beyond the furthest deadline a command may carry")
    func defaultRetention() async {
        let ledger = CommandLedger()
        let start = ContinuousClock.now
        _ = await ledger.result(for: "c1", now: start) { Self.result("c1") }
        _ = await ledger.result(for: "c2", now: start + .milliseconds(FenceCommand.longestLifetime) + .seconds(1)) { Self.result("c2") }
        let (copy, repeated) = await ledger.result(for: "c1", now: start + .milliseconds(FenceCommand.longestLifetime) + .seconds(2)) { Self.result("a second run") }
        #expect(copy == Self.result("c1") && repeated)
    }
}
