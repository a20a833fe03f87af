#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Threads of their own for requests whose steps block: a call-back's socket driven with plain
/// poll(2) and read(2), as the reference does, instead of a NIO channel whose set-up cost more
/// than the rest of a status request; a libvirt call. Each request runs on one thread as its task
/// executor, so its blocking steps never hold Swift's cooperative pool, and nothing waits for
/// another thread to wake up (each such wake-up was measured at 50–250 µs here).
///
/// Threads are made on demand (the request history bounds how many call-backs run at once) and
/// kept for reuse up to `idleLimit`; the rest end when their request does.
public final class RequestThreads: Sendable {
    private let idle = Mutex<[RequestThread]>([])
    private let idleLimit: Int
    private let budget: BlockingBudget

    public init(idleLimit: Int = 16, budget: BlockingBudget = BlockingBudget()) {
        self.idleLimit = idleLimit
        self.budget = budget
    }

    deinit {
        for thread in idle.withLock({ $0 }) { thread.stop() }
    }

    /// An idle thread, or a new one (nil when the system refuses one); the caller gives it back
    /// when its task is done with it.
    public func take() -> RequestThread? {
        idle.withLock { $0.popLast() } ?? RequestThread(budget: budget)
    }

    public func giveBack(_ thread: RequestThread) {
        let kept = idle.withLock { idle in
            guard idle.count < idleLimit else { return false }
            idle.append(thread)
            return true
        }
        if !kept { thread.stop() }
    }
}

/// How much blocking work the request threads that share it may hold at once: no more of them
/// than that can be left stuck in work that never returns (a hung libvirt).
public final class BlockingBudget: Sendable {
    public let limit: Int
    private let taken = Atomic<Int>(0)

    public init(limit: Int = 8) {
        self.limit = limit
    }

    func take() -> Bool {
        guard taken.add(1, ordering: .relaxed).newValue <= limit else {
            taken.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func giveBack() {
        taken.subtract(1, ordering: .relaxed)
    }
}

/// An OS thread that runs the jobs of the task that prefers it, in order, and the blocking work
/// that task hands it (`runBetweenJobs`): the task suspends, the work runs on the same thread,
/// and the task resumes there, with no other thread woken.
///
/// When blocking work outlasts its deadline (a hung libvirt call), `rescue(_:)` gives the queue
/// to a new OS thread, so that the waiting task is answered in time; the stuck one ends once the
/// work returns. The threads of one pool share a `BlockingBudget`, so that no more threads than
/// its limit can be left stuck: past it, `runBetweenJobs` declines, and the work goes where a
/// hung call holds a bounded pool.
public final class RequestThread: TaskExecutor, Sendable {
    /// The request thread whose task runs now, for blocking work that may run on it.
    @TaskLocal public static var current: RequestThread?

    private let budget: BlockingBudget

    private enum Item {
        /// A job, and the executor it runs as (this thread's, or a `MovingExecutor` pointing here).
        case job(UnownedJob, UnownedTaskExecutor?)
        case work(Int, @Sendable () -> Void)
        case stop
    }

    private struct Queue {
        var items: [Item] = []
        /// The generation of the OS thread that serves the queue; a rescue starts the next.
        var server = 0
        /// That OS thread, once it runs.
        var serving: pthread_t?
        /// The blocking work it is inside, if any.
        var running: Int?
        var lastWork = 0
    }

    private let queue = Mutex(Queue())
    private let ready = DispatchSemaphore(value: 0)

    /// Nil when the system refuses a thread.
    public init?(budget: BlockingBudget) {
        self.budget = budget
        guard serve(generation: 0, after: nil) else { return nil }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        push(.job(UnownedJob(job), nil))
    }

    /// Runs `job` here as a job of `executor`, so that a task preferring that executor finds
    /// itself on it.
    func enqueue(_ job: consuming ExecutorJob, as executor: UnownedTaskExecutor) {
        push(.job(UnownedJob(job), executor))
    }

    /// Runs `body` with this thread as the one for blocking work (`current`).
    public func hosting<T>(_ body: () async -> T) async -> T {
        await Self.$current.withValue(self, operation: body)
    }

    /// How many times a rescue gave this thread's queue to a new OS thread.
    public var rescues: Int { queue.withLock { $0.server } }

    /// Runs `work` on this thread after the job that runs now, and returns its token for
    /// `rescue`; nil, and nothing done, when the caller does not run on this thread (a task-local
    /// outlives the executor preference in a task made elsewhere) or the budget is spent.
    public func runBetweenJobs(_ work: @escaping @Sendable () -> Void) -> Int? {
        guard queue.withLock({ $0.serving.map { pthread_equal($0, pthread_self()) != 0 } }) == true,
              budget.take() else { return nil }
        let budget = self.budget
        let token = queue.withLock { queue in
            queue.lastWork += 1
            queue.items.append(.work(queue.lastWork, {
                work()
                budget.giveBack()
            }))
            return queue.lastWork
        }
        ready.signal()
        return token
    }

    /// Called at a blocking step's deadline: if the thread is still inside that work, a new OS
    /// thread takes over the queue (unless the system refuses one: then the queue waits for the
    /// work to return).
    public func rescue(_ token: Int) {
        guard let current = queue.withLock({ $0.running == token ? $0.server : nil }) else { return }
        // The new thread waits until the hand-over is decided: the work may return meanwhile.
        let handOver = HandOver()
        guard serve(generation: current + 1, after: handOver) else { return }
        let committed = queue.withLock { queue in
            guard queue.running == token, queue.server == current else { return false }
            queue.running = nil
            queue.server = current + 1
            return true
        }
        handOver.decide(committed)
    }

    /// The thread ends once the items queued before this ran.
    public func stop() {
        push(.stop)
    }

    private func push(_ item: Item) {
        queue.withLock { $0.items.append(item) }
        ready.signal()
    }

    private func serve(generation: Int, after handOver: HandOver?) -> Bool {
        let context = Unmanaged.passRetained(Server(thread: self, generation: generation, handOver: handOver)).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { context in
            Unmanaged<Server>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        guard created == 0 else {
            Unmanaged<Server>.fromOpaque(context).release()
            return false
        }
        pthread_detach(thread)
        return true
    }

    /// Whether a rescuing thread takes over, decided once it runs.
    private final class HandOver: Sendable {
        private let decided = DispatchSemaphore(value: 0)
        private let taken = Atomic(false)

        func decide(_ take: Bool) {
            taken.store(take, ordering: .sequentiallyConsistent)
            decided.signal()
        }

        func wait() -> Bool {
            decided.wait()
            return taken.load(ordering: .sequentiallyConsistent)
        }
    }

    /// One OS thread's loop over the queue, until it is stopped or replaced by a rescue.
    private final class Server {
        let thread: RequestThread
        let generation: Int
        let handOver: HandOver?

        init(thread: RequestThread, generation: Int, handOver: HandOver?) {
            self.thread = thread
            self.generation = generation
            self.handOver = handOver
        }

        func run() {
            if let handOver, !handOver.wait() { return }
            // Named for ps and perf (pthread_setname_np is not visible to Swift here).
            let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if comm >= 0 {
                _ = write(comm, "fence-request", 13)
                close(comm)
            }
            thread.queue.withLock { $0.serving = pthread_self() }
            while true {
                thread.ready.wait()
                let item = thread.queue.withLock { queue in
                    let item = queue.items.removeFirst()
                    if case .work(let token, _) = item { queue.running = token }
                    return item
                }
                switch item {
                case .stop:
                    thread.queue.withLock { $0.serving = nil }
                    return
                case .job(let job, let executor):
                    job.runSynchronously(on: executor ?? thread.asUnownedTaskExecutor())
                case .work(_, let work):
                    work()
                    let replaced = thread.queue.withLock { queue in
                        guard queue.server == generation else { return true }
                        queue.running = nil
                        return false
                    }
                    if replaced { return }
                }
            }
        }
    }
}

/// A task executor that runs its jobs on one request thread at a time, or on Swift's global
/// executor, and can be pointed elsewhere. A task that prefers it and leaves a
/// `withTaskExecutorPreference` scope for a request thread continues wherever it points then:
/// the multicast listener's receiving loop goes from the thread that admitted a request (and now
/// serves it) straight to the next one, instead of through the global executor (a thread of it
/// woken for nothing, per request). Point it only at a thread the task holds (not given back):
/// a stopped thread runs nothing more, and the task would never resume.
package final class MovingExecutor: TaskExecutor, Sendable {
    /// Nil: the global executor.
    private let target: Mutex<RequestThread?>

    package init(_ thread: RequestThread?) {
        target = Mutex(thread)
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        if let thread = target.withLock({ $0 }) {
            thread.enqueue(job, as: asUnownedTaskExecutor())
        } else {
            globalConcurrentExecutor.enqueue(job)
        }
    }

    /// Where the jobs enqueued from now on run.
    package func move(to thread: RequestThread?) {
        target.withLock { $0 = thread }
    }
}
