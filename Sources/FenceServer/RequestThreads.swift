#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Threads of their own for requests whose socket I/O blocks: a call-back is driven with plain
/// poll(2) and read(2) (`CallbackSession`), as the reference does, instead of a NIO channel whose
/// set-up cost more than the rest of a status request. Each request runs on one thread as its
/// task executor, so its blocking steps never hold Swift's cooperative pool and its other steps
/// (the backend's answer) resume on it without another hop.
///
/// Threads are made on demand (the request history bounds how many call-backs run at once) and
/// kept for reuse up to `idleLimit`; the rest end when their request does.
final class RequestThreads: Sendable {
    private let idle = Mutex<[RequestThread]>([])
    private let idleLimit: Int

    init(idleLimit: Int = 16) {
        self.idleLimit = idleLimit
    }

    deinit {
        for thread in idle.withLock({ $0 }) { thread.stop() }
    }

    /// Runs `body` on a thread of its own.
    func run<T: Sendable>(_ body: () async -> T) async -> T {
        let thread = take()
        defer { giveBack(thread) }
        return await withTaskExecutorPreference(thread, operation: body)
    }

    /// An idle thread, or a new one; the caller gives it back when its task is done with it.
    func take() -> RequestThread {
        idle.withLock { $0.popLast() } ?? RequestThread()
    }

    func giveBack(_ thread: RequestThread) {
        let kept = idle.withLock { idle in
            guard idle.count < idleLimit else { return false }
            idle.append(thread)
            return true
        }
        if !kept { thread.stop() }
    }
}

/// One OS thread that runs the jobs of the task that prefers it, in order.
final class RequestThread: TaskExecutor, Sendable {
    private let jobs = Mutex<[UnownedJob?]>([])
    private let ready = DispatchSemaphore(value: 0)

    init() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            Unmanaged<RequestThread>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(created == 0, "cannot start a request thread")
        pthread_detach(thread)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.append(job) }
        ready.signal()
    }

    /// The thread ends once the jobs queued before this ran.
    func stop() {
        jobs.withLock { $0.append(nil) }
        ready.signal()
    }

    private func run() {
        // Named for ps and perf (pthread_setname_np is not visible to Swift here).
        let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        if comm >= 0 {
            _ = write(comm, "fence-request", 13)
            close(comm)
        }
        while true {
            ready.wait()
            guard let job = jobs.withLock({ $0.removeFirst() }) else { return }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
