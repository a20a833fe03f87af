import Foundation

/// Runs a blocking call (waitpid, usleep) on its own thread, so that tests running in parallel on
/// Swift's small cooperative pool are never starved by it.
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
