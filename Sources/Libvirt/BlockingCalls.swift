import CallbackWaits
import NIOPosix
import RequestThreads
import Synchronization

/// Runs blocking libvirt calls on dedicated threads, never on Swift's cooperative pool, and stops
/// waiting for them at a deadline.
///
/// A call that misses its deadline keeps its thread until libvirt returns; the caller has already
/// been answered with `.timedOut` and the late result is discarded. A call still queued for a
/// thread when its deadline passes never starts: a destroy or start whose request was already
/// answered as failed must not happen afterwards.
struct BlockingCalls: Sendable {
    static let shared = BlockingCalls(threads: 8)

    private let pool: NIOThreadPool

    init(threads: Int) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
    }

    func run<T: Sendable>(
        _ operation: String,
        deadline: ContinuousClock.Instant,
        _ body: @escaping @Sendable () throws(LibvirtError) -> T
    ) async throws(LibvirtError) -> T {
        guard ContinuousClock.now < deadline else {
            throw LibvirtError(code: .timedOut, operation: operation, message: "deadline passed before the call")
        }
        // On a request's own thread the call runs there, between the request's steps: no thread
        // is woken for it, and a call that outlasts its deadline gives the request a new thread.
        let host = RequestThread.current
        let hosted = Mutex<Int?>(nil)
        let result: Result<T, LibvirtError> = await CallbackWait.wait(until: deadline, expired: {
            if let host, let token = hosted.withLock({ $0 }) { host.rescue(token) }
            return .failure(LibvirtError(code: .timedOut, operation: operation, message: "no answer before the deadline"))
        }) { once in
            let call: @Sendable () -> Void = {
                guard !once.isDone, ContinuousClock.now < deadline else {
                    once.resume(.failure(LibvirtError(code: .timedOut, operation: operation, message: "waited for a thread past the deadline; not started")))
                    return
                }
                once.resume(Result(catching: body))
            }
            if let token = host?.runBetweenJobs(call) {
                hosted.withLock { $0 = token }
                return
            }
            pool.submit { state in
                guard case .active = state else {
                    once.resume(.failure(LibvirtError(code: .callFailed, operation: operation, message: "thread pool shut down")))
                    return
                }
                call()
            }
        }
        return try result.get()
    }
}
