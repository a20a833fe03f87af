import Dispatch
import Glibc
import Synchronization
import Testing
import RequestThreads

@Suite("request threads")
struct RequestThreadTests {
    /// The OS thread a task preferring `thread` runs on now.
    func osThread(on thread: RequestThread) async -> pthread_t {
        await withTaskExecutorPreference(thread) { pthread_self() }
    }

    /// Waits (never a fixed sleep) until `condition` holds, for 10 s at most.
    func eventually(_ condition: () -> Bool) async throws -> Bool {
        let limit = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < limit else { return false }
            try await Task.sleep(for: .milliseconds(2))
        }
        return true
    }

    @Test("blocking work runs on the thread between its task's jobs; a rescue after it returned changes nothing")
    func lateRescue() async throws {
        let thread = try #require(RequestThread())
        defer { thread.stop() }
        let before = await osThread(on: thread)
        let ran = Mutex<pthread_t?>(nil)
        let token = thread.runBetweenJobs { ran.withLock { $0 = pthread_self() } }
        #expect(try await eventually { ran.withLock { $0 } != nil })
        #expect(pthread_equal(try #require(ran.withLock { $0 }), before) != 0, "the work ran on the request's thread")
        thread.rescue(token)
        #expect(thread.rescues == 0, "no new thread for work that had returned")
        #expect(pthread_equal(await osThread(on: thread), before) != 0)
    }

    @Test("a rescue hands the queue to a new thread while the work is stuck, and that thread goes on serving it")
    func rescueStuck() async throws {
        let thread = try #require(RequestThread())
        defer { thread.stop() }
        let before = await osThread(on: thread)
        final class Gate: Sendable {
            let entered = Atomic(false)
            let released = Atomic(false)
        }
        let gate = Gate()
        let token = thread.runBetweenJobs {
            gate.entered.store(true, ordering: .sequentiallyConsistent)
            while !gate.released.load(ordering: .sequentiallyConsistent) { usleep(1_000) }
        }
        #expect(try await eventually { gate.entered.load(ordering: .sequentiallyConsistent) })
        thread.rescue(token)
        // The task's jobs run again, on another OS thread, while the work is still stuck. (Without
        // the rescue they would wait for the work: it is let go after a while, so that the test
        // fails rather than hangs.)
        let (after, stillStuck) = await withTaskGroup { group in
            group.addTask {
                try? await Task.sleep(for: .seconds(20))
                gate.released.store(true, ordering: .sequentiallyConsistent)
            }
            defer { group.cancelAll() }
            let after = await osThread(on: thread)
            return (after, !gate.released.load(ordering: .sequentiallyConsistent))
        }
        gate.released.store(true, ordering: .sequentiallyConsistent)
        #expect(thread.rescues == 1)
        #expect(pthread_equal(after, before) == 0)
        #expect(stillStuck)
        #expect(pthread_equal(await osThread(on: thread), after) != 0)
    }

    @Test("idle threads are kept for reuse up to the limit")
    func idleLimit() async throws {
        let threads = RequestThreads(idleLimit: 1)
        let first = try #require(threads.take())
        let second = try #require(threads.take())
        threads.giveBack(first)
        threads.giveBack(second)   // over the limit: stopped
        #expect(threads.take() === first)
        let fresh = try #require(threads.take())
        #expect(fresh !== first && fresh !== second)
        fresh.stop()
        first.stop()
    }
}
