import Synchronization
import Testing
import TestSupport
@testable import CallbackWaits

@Suite("deadlines and waits with a deadline")
struct DeadlinesTests {
    @Test("a deadline set after a later one fires first, without waiting for the later one")
    func earlierLater() async throws {
        let fired = Mutex<[String]>([])
        Deadlines.shared.at(.now + .seconds(3600)) { fired.withLock { $0.append("late") } }
        Deadlines.shared.at(.now + .milliseconds(20)) { fired.withLock { $0.append("early") } }
        try await waitUntil("the earlier deadline fired, alone", within: .seconds(10), every: .milliseconds(2)) { fired.withLock { $0 } == ["early"] }
    }

    @Test("deadlines fire in the order of their times, whatever the order they were set in")
    func order() async throws {
        let fired = Mutex<[Int]>([])
        let start = ContinuousClock.now + .milliseconds(50)
        for index in (0..<40).shuffled() {
            Deadlines.shared.at(start + .milliseconds(2 * index)) { fired.withLock { $0.append(index) } }
        }
        try await waitUntil("every deadline fired", within: .seconds(10), every: .milliseconds(2)) { fired.withLock { $0.count } == 40 }
        #expect(fired.withLock { $0 } == Array(0..<40))
    }

    @Test("a deadline with nothing left to do does not run: at its time, nor before it")
    func settled() async throws {
        let deadlines = Deadlines()
        defer { deadlines.stop() }
        let fired = Mutex<[String]>([])
        deadlines.at(.now + .milliseconds(50), pending: { false }) { fired.withLock { $0.append("settled") } }
        deadlines.at(.now + .milliseconds(60)) { fired.withLock { $0.append("pending") } }
        try await waitUntil("the pending deadline fired", within: .seconds(10), every: .milliseconds(2)) { fired.withLock { $0 } == ["pending"] }
        #expect(fired.withLock { $0 } == ["pending"])
    }

    /// Its closures are released once the entry is gone.
    private final class Sentinel: Sendable {
        let released: @Sendable () -> Void
        init(_ released: @escaping @Sendable () -> Void) { self.released = released }
        deinit { released() }
    }

    @Test("a settled wait's deadline, minutes away, is dropped at the timer's next look")
    func droppedAtLook() async throws {
        let deadlines = Deadlines()
        defer { deadlines.stop() }
        let released = Mutex(false)
        do {
            let sentinel = Sentinel { released.withLock { $0 = true } }
            deadlines.at(.now + .seconds(600), pending: { _ = sentinel; return false }) { Issue.record("a settled deadline ran") }
        }
        try await waitUntil("the entry was dropped", within: Deadlines.look * 5, every: .milliseconds(10)) { released.withLock { $0 } }
    }

    @Test("a wait ends with the work's result, or with expired() at the deadline when the work never answers")
    func wait() async {
        let answered = await CallbackWait.wait(until: .now + .seconds(3600), expired: { "expired" }) { once in once.resume("answered") }
        #expect(answered == "answered")
        let silent = await CallbackWait.wait(until: .now + .milliseconds(20), expired: { "expired" }) { _ in }
        #expect(silent == "expired")
    }
}
