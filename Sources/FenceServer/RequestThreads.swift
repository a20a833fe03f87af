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
    private let idle: Mutex<(threads: [RequestThread], closed: Bool)> = Mutex(([], false))
    private let idleLimit: Int

    init(idleLimit: Int = 4) {
        self.idleLimit = idleLimit
    }

    deinit {
        for thread in idle.withLock({ $0.threads }) { thread.stop() }
    }

    /// Runs `body` on a thread of its own.
    func run<T: Sendable>(_ body: () async -> T) async -> T {
        let thread = idle.withLock { $0.threads.popLast() } ?? RequestThread()
        let result = await withTaskExecutorPreference(thread, operation: body)
        let kept = idle.withLock { idle in
            guard !idle.closed, idle.threads.count < idleLimit else { return false }
            idle.threads.append(thread)
            return true
        }
        if !kept { thread.stop() }
        return result
    }

    /// Ends the idle threads; threads still serving end with their request.
    func close() {
        let threads = idle.withLock { idle in
            idle.closed = true
            defer { idle.threads = [] }
            return idle.threads
        }
        for thread in threads { thread.stop() }
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
        while true {
            ready.wait()
            guard let job = jobs.withLock({ $0.removeFirst() }) else { return }
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
