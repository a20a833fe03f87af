#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Actions due at deadlines, run by one thread of their own. Setting a deadline wakes that thread
/// only when it is earlier than every one pending; a request's deadline (some seconds away, after
/// those of the requests before it) wakes nothing. An event loop's timer, set from another thread,
/// woke its loop every time: a system call on the request's path and a wake-up on another CPU.
///
/// Actions run on the timer thread, one after the other: they must be short and never block.
final class Deadlines: Sendable {
    static let shared = Deadlines()

    private struct Entry {
        let due: ContinuousClock.Instant
        let action: @Sendable () -> Void
    }

    /// A binary min-heap on `due`.
    private let pending = Mutex<[Entry]>([])
    private let changed = DispatchSemaphore(value: 0)

    private init() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            Unmanaged<Deadlines>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(created == 0, "cannot start the deadline thread")
        pthread_detach(thread)
    }

    /// Runs `action` at `due` (at once if it has passed).
    func at(_ due: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) {
        let earliest = pending.withLock { heap in
            heap.append(Entry(due: due, action: action))
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[child].due < heap[parent].due else { break }
                heap.swapAt(child, parent)
                child = parent
            }
            return child == 0
        }
        if earliest { changed.signal() }
    }

    private func run() {
        while true {
            let (due, next) = pending.withLock { heap in
                var due: [@Sendable () -> Void] = []
                let now = ContinuousClock.now
                while let first = heap.first, first.due <= now {
                    due.append(first.action)
                    Self.removeFirst(&heap)
                }
                return (due, heap.first?.due)
            }
            for action in due { action() }
            guard let next else {
                changed.wait()
                continue
            }
            let wait = next - .now
            if wait > .zero {
                // At most an hour at a time: a far deadline is looked at again, never overflows.
                let (seconds, attoseconds) = wait.components
                let nanoseconds = Int(min(seconds, 3600)) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
                _ = changed.wait(timeout: .now() + .nanoseconds(nanoseconds))
            }
        }
    }

    private static func removeFirst(_ heap: inout [Entry]) {
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, heap[left].due < heap[smallest].due { smallest = left }
            if right < heap.count, heap[right].due < heap[smallest].due { smallest = right }
            guard smallest != parent else { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
