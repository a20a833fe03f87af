import Synchronization
import Testing
import TestSupport

/// The tear-down the labs rely on to remove their namespaces and processes.
@Suite("withCleanup")
struct CleanupTests {
    struct Failure: Error {}

    @Test("cleans up after the body returns and after it throws, once, after the body")
    func cleansUp() async throws {
        let steps = Mutex<[String]>([])
        let value = try await withCleanup { () async throws -> Int in
            steps.withLock { $0.append("body") }
            return 7
        } cleanup: {
            steps.withLock { $0.append("cleanup") }
        }
        #expect(value == 7)
        #expect(steps.withLock { $0 } == ["body", "cleanup"])

        steps.withLock { $0 = [] }
        await #expect(throws: Failure.self) {
            try await withCleanup { () async throws -> Int in
                steps.withLock { $0.append("body") }
                throw Failure()
            } cleanup: {
                steps.withLock { $0.append("cleanup") }
            }
        }
        #expect(steps.withLock { $0 } == ["body", "cleanup"])
    }
}
