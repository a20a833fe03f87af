import Dispatch
import Glibc
import Synchronization
import Testing
import TestSupport
import RequestThreads

@Suite("request threads")
struct RequestThreadTests {
    /// The OS thread a task preferring `thread` runs on now.
    func osThread(on thread: RequestThread) async -> pthread_t {
        await withTaskExecutorPreference(thread) { pthread_self() }
    }

    /// `runBetweenJobs` from a task on `thread`, as its callers do.
    func runBetweenJobs(on thread: RequestThread, _ work: @escaping @Sendable () -> Void) async -> Int? {
        await withTaskExecutorPreference(thread) { thread.runBetweenJobs(work) }
    }

    final class Gate: Sendable {
        let entered = Atomic(false)
        let released = Atomic(false)

        func hold() {
            entered.store(true, ordering: .sequentiallyConsistent)
            while !released.load(ordering: .sequentiallyConsistent) { usleep(1_000) }
        }
    }

    @Test("blocking work runs on the thread between its task's jobs; a rescue names its work, and one after the work returned changes nothing")
    func lateRescue() async throws {
        let thread = try #require(RequestThread(budget: BlockingBudget()))
        defer { thread.stop() }
        let before = await osThread(on: thread)
        let ran = Mutex<pthread_t?>(nil)
        let first = try #require(await runBetweenJobs(on: thread) { ran.withLock { $0 = pthread_self() } })
        // A job queued after the work runs after it has returned.
        _ = await osThread(on: thread)
        #expect(pthread_equal(try #require(ran.withLock { $0 }), before) != 0, "the work ran on the request's thread")
        thread.rescue(first)
        #expect(thread.rescues == 0, "no new thread for work that had returned")
        // Another piece of work, stuck: a rescue naming the first changes nothing either.
        let gate = Gate()
        _ = try #require(await runBetweenJobs(on: thread) { gate.hold() })
        try await waitUntil("the work runs", within: .seconds(10), every: .milliseconds(2)) { gate.entered.load(ordering: .sequentiallyConsistent) }
        thread.rescue(first)
        let rescuesForFirst = thread.rescues
        gate.released.store(true, ordering: .sequentiallyConsistent)
        #expect(rescuesForFirst == 0, "a rescue only for the work it names")
        #expect(pthread_equal(await osThread(on: thread), before) != 0)
    }

    @Test("blocking work is declined from a task that does not run on the thread, and past the budget")
    func declined() async throws {
        let budget = BlockingBudget(limit: 1)
        let holder = try #require(RequestThread(budget: budget))
        let other = try #require(RequestThread(budget: budget))
        defer {
            holder.stop()
            other.stop()
        }
        #expect(other.runBetweenJobs {} == nil, "not from a task on another thread")
        let gate = Gate()
        #expect(await runBetweenJobs(on: holder) { gate.hold() } != nil)
        let beyond = await runBetweenJobs(on: other) {}
        gate.released.store(true, ordering: .sequentiallyConsistent)
        #expect(beyond == nil, "the budget of one is held by the other thread")
    }

    @Test("a rescue hands the queue to a new thread while the work is stuck, and that thread goes on serving it")
    func rescueStuck() async throws {
        let thread = try #require(RequestThread(budget: BlockingBudget()))
        defer { thread.stop() }
        let before = await osThread(on: thread)
        let gate = Gate()
        let token = try #require(await runBetweenJobs(on: thread) { gate.hold() })
        try await waitUntil("the work runs", within: .seconds(10), every: .milliseconds(2)) { gate.entered.load(ordering: .sequentiallyConsistent) }
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

    @Test("a task that prefers a moving executor goes, on leaving a thread's scope, where the executor points")
    func moving() async throws {
        let budget = BlockingBudget()
        let first = try #require(RequestThread(budget: budget))
        let second = try #require(RequestThread(budget: budget))
        defer {
            first.stop()
            second.stop()
        }
        let executor = MovingExecutor(nil)
        // `runBetweenJobs` accepts work only from the thread the caller runs on.
        let places = await withTaskExecutorPreference(executor) { () async -> [Bool] in
            var places: [Bool] = []
            for _ in 0..<50 {
                await withTaskExecutorPreference(first) {
                    places.append(first.runBetweenJobs {} != nil)
                    executor.move(to: second)
                }
                places.append(second.runBetweenJobs {} != nil)
                await withTaskExecutorPreference(second) {
                    places.append(second.runBetweenJobs {} != nil)
                    executor.move(to: first)
                }
                places.append(first.runBetweenJobs {} != nil)
            }
            // Pointed nowhere: the global executor, neither thread.
            await withTaskExecutorPreference(first) { executor.move(to: nil) }
            places.append(first.runBetweenJobs {} == nil && second.runBetweenJobs {} == nil)
            return places
        }
        #expect(places == Array(repeating: true, count: 201))
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
