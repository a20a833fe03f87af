import FenceBus
@testable import HostAgent
import Synchronization
import Testing

@Suite("Command ledger")
struct CommandLedgerTests {
    static func result(_ id: String) -> CommandResult {
        CommandResult(commandID: id, host: "h1", outcome: .success, observed: nil)
    }

    @Test("a command runs once; its copies get its result; once answered only the result is kept, not its run")
    func once() async {
        let ledger = CommandLedger()
        let runs = Mutex(0)
        let execute: @Sendable () async -> CommandResult = {
            runs.withLock { $0 += 1 }
            return Self.result("c1")
        }
        let (first, firstRepeated) = await ledger.result(for: "c1", now: 1_000, execute: execute)
        #expect(first == Self.result("c1") && !firstRepeated)
        // A finished task kept in the ledger holds the memory its run used (14 KB a command).
        #expect(ledger.remembered == (total: 1, running: 0))
        let (copy, copyRepeated) = await ledger.result(for: "c1", now: 2_000, execute: execute)
        #expect(copy == first && copyRepeated)
        #expect(runs.withLock { $0 } == 1)
    }

    @Test("a copy that arrives while the command runs waits for that run")
    func copyWhileRunning() async {
        let ledger = CommandLedger()
        let (gate, open) = AsyncStream<Void>.makeStream()
        let runs = Mutex(0)
        let execute: @Sendable () async -> CommandResult = {
            runs.withLock { $0 += 1 }
            for await _ in gate { break }
            return Self.result("c1")
        }
        async let first = ledger.result(for: "c1", now: 1_000, execute: execute)
        while ledger.remembered.running == 0 { await Task.yield() }
        async let copy = ledger.result(for: "c1", now: 1_001, execute: execute)
        open.yield()
        let (a, b) = await (first, copy)
        #expect(a.0 == b.0 && a.repeated != b.repeated)
        #expect(runs.withLock { $0 } == 1)
        #expect(ledger.remembered == (total: 1, running: 0))
    }

    @Test("a refusal is not remembered; what is past its retention is forgotten")
    func refusalAndRetention() async {
        let ledger = CommandLedger(retention: 10_000)
        let refused = CommandResult(commandID: "c1", host: "h1", outcome: .failed(code: "agent-restarted", message: "not executed"), observed: nil)
        let (answer, _) = await ledger.result(for: "c1", now: 1_000, unlessNew: refused) { Self.result("c1") }
        #expect(answer == refused)
        #expect(ledger.remembered.total == 0)
        _ = await ledger.result(for: "c2", now: 1_000) { Self.result("c2") }
        _ = await ledger.result(for: "c3", now: 5_000) { Self.result("c3") }
        #expect(ledger.remembered.total == 2, "c2 is not past its retention yet")
        _ = await ledger.result(for: "c4", now: 11_500) { Self.result("c4") }
        #expect(ledger.remembered.total == 2, "c2 forgotten, c3 and c4 kept")
    }
}
