import NIOCore
import NIOPosix
import Synchronization

/// Runs blocking libvirt calls on dedicated threads, never on Swift's cooperative pool, and stops
/// waiting for them at a deadline.
///
/// A call that misses its deadline keeps its thread until libvirt returns; the caller has already
/// been answered with `.timedOut` and the late result is discarded.
///
/// The deadline is a timer on an event loop (the caller's own when it runs on one), left to fire
/// even after the call returned: cancelling it from the pool thread would wake the loop for
/// nothing, and a late timer finds the call answered and does nothing.
struct BlockingCalls: Sendable {
    static let shared = BlockingCalls(threads: 8, timers: MultiThreadedEventLoopGroup.singleton)

    private let pool: NIOThreadPool
    private let timers: any EventLoopGroup

    init(threads: Int, timers: any EventLoopGroup) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        self.timers = timers
    }

    func run<T: Sendable>(
        _ operation: String,
        deadline: ContinuousClock.Instant,
        _ body: @escaping @Sendable () throws(LibvirtError) -> T
    ) async throws(LibvirtError) -> T {
        guard ContinuousClock.now < deadline else {
            throw LibvirtError(code: .timedOut, operation: operation, message: "deadline passed before the call")
        }
        let result: Result<T, LibvirtError> = await withCheckedContinuation { continuation in
            let once = ResumeOnce(continuation)
            timers.any().scheduleTask(in: TimeAmount(deadline - .now)) {
                once.resume(.failure(LibvirtError(code: .timedOut, operation: operation, message: "no answer before the deadline")))
            }
            pool.submit { state in
                guard case .active = state else {
                    once.resume(.failure(LibvirtError(code: .callFailed, operation: operation, message: "thread pool shut down")))
                    return
                }
                once.resume(Result(catching: body))
            }
        }
        return try result.get()
    }
}

/// A continuation that the first of several racers resumes; later attempts are ignored.
private final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, Never>?>

    init(_ continuation: CheckedContinuation<T, Never>) {
        self.continuation = Mutex(continuation)
    }

    func resume(_ value: T) {
        let pending = continuation.withLock { slot in
            defer { slot = nil }
            return slot
        }
        pending?.resume(returning: value)
    }
}
