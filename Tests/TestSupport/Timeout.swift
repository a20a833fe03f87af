/// Thrown when an awaited step of a test takes too long.
public struct TimedOut: Error, CustomStringConvertible {
    public let what: String
    public init(what: String) { self.what = what }
    public var description: String { "timed out: \(what)" }
}

/// Runs `body`, failing with `TimedOut` after `limit`, so that no test can hang.
public func withTimeout<T: Sendable>(
    _ limit: Duration,
    _ what: String,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimedOut(what: what)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Polls `condition` until it holds, failing with `TimedOut` after `limit`: a test waits for a
/// state, never for a fixed time.
public func waitUntil(
    _ what: String,
    within limit: Duration = .seconds(20),
    every pause: Duration = .milliseconds(100),
    _ condition: () async throws -> Bool
) async throws {
    let end = ContinuousClock.now + limit
    while try await !condition() {
        guard ContinuousClock.now < end else { throw TimedOut(what: what) }
        try await Task.sleep(for: pause)
    }
}

/// Runs `body`, then `cleanup` whether it returned or threw: the asynchronous tear-down that a
/// `defer` cannot await.
public func withCleanup<T>(_ body: () async throws -> T, cleanup: () async -> Void) async throws -> T {
    let result: T
    do {
        result = try await body()
    } catch {
        await cleanup()
        throw error
    }
    await cleanup()
    return result
}
