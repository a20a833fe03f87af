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

    public init(idleLimit: Int = 16) {
        self.idleLimit = idleLimit
    }

    deinit {
        for thread in idle.withLock({ $0 }) { thread.stop() }
    }

    /// Runs `body` on a thread of its own.
    public func run<T: Sendable>(_ body: () async -> T) async -> T {
        let thread = take()
        defer { giveBack(thread) }
        return await withTaskExecutorPreference(thread) { await thread.hosting(body) }
    }

    /// An idle thread, or a new one; the caller gives it back when its task is done with it.
    public func take() -> RequestThread {
        idle.withLock { $0.popLast() } ?? RequestThread()
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

/// An OS thread that runs the jobs of the task that prefers it, in order, and the blocking work
/// that task hands it (`runBetweenJobs`): the task suspends, the work runs on the same thread,
/// and the task resumes there, with no other thread woken.
///
/// When blocking work outlasts its deadline (a hung libvirt call), `rescue()` gives the queue to a
/// new OS thread, so that the waiting task is answered in time; the stuck one ends once the work
/// returns.
public final class RequestThread: TaskExecutor, Sendable {
    /// The request thread whose task runs now, for blocking work that may run on it.
    @TaskLocal public static var current: RequestThread?

    private enum Item {
        case job(UnownedJob)
        case work(@Sendable () -> Void)
        case stop
    }

    private struct Queue {
        var items: [Item] = []
        /// The generation of the OS thread that serves the queue; a rescue starts the next.
        var server = 0
        /// The server is inside blocking work.
        var working = false
    }

    private let queue = Mutex(Queue())
    private let ready = DispatchSemaphore(value: 0)

    public init() {
        serve(generation: 0)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        push(.job(UnownedJob(job)))
    }

    /// Runs `body` with this thread as the one for blocking work (`current`).
    public func hosting<T>(_ body: () async -> T) async -> T {
        await Self.$current.withValue(self, operation: body)
    }

    /// Runs `work` on this thread after the job that runs now.
    public func runBetweenJobs(_ work: @escaping @Sendable () -> Void) {
        push(.work(work))
    }

    /// Called at a blocking step's deadline: if the thread is stuck in blocking work, a new OS
    /// thread takes over the queue.
    public func rescue() {
        let generation: Int? = queue.withLock { queue in
            guard queue.working else { return nil }
            queue.working = false
            queue.server += 1
            return queue.server
        }
        if let generation { serve(generation: generation) }
    }

    /// The thread ends once the items queued before this ran.
    public func stop() {
        push(.stop)
    }

    private func push(_ item: Item) {
        queue.withLock { $0.items.append(item) }
        ready.signal()
    }

    private func serve(generation: Int) {
        let context = Unmanaged.passRetained(Server(thread: self, generation: generation)).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { context in
            Unmanaged<Server>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(created == 0, "cannot start a request thread")
        pthread_detach(thread)
    }

    /// One OS thread's loop over the queue, until it is stopped or replaced by a rescue.
    private final class Server {
        let thread: RequestThread
        let generation: Int

        init(thread: RequestThread, generation: Int) {
            self.thread = thread
            self.generation = generation
        }

        func run() {
            // Named for ps and perf (pthread_setname_np is not visible to Swift here).
            let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if comm >= 0 {
                _ = write(comm, "fence-request", 13)
                close(comm)
            }
            while true {
                thread.ready.wait()
                let item: Item? = thread.queue.withLock { queue in
                    guard queue.server == generation else { return nil }
                    let item = queue.items.removeFirst()
                    if case .work = item { queue.working = true }
                    return item
                }
                switch item {
                case nil:
                    // Replaced: the signal belongs to the new server.
                    thread.ready.signal()
                    return
                case .stop:
                    return
                case .job(let job):
                    job.runSynchronously(on: thread.asUnownedTaskExecutor())
                case .work(let work):
                    work()
                    let replaced = thread.queue.withLock { queue in
                        guard queue.server == generation else { return true }
                        queue.working = false
                        return false
                    }
                    if replaced { return }
                }
            }
        }
    }
}
