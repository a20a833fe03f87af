#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Actions due at deadlines, run by one thread of their own. The thread looks at least once a
/// second, and setting a deadline wakes it only when the deadline comes before its next look: a
/// request's deadline (seconds away) wakes nothing. A wait that ended before its deadline is
/// dropped unrun once the deadlines before it are gone (at the next look, unless an earlier one
/// still waits), and never wakes the thread. (An event loop's
/// timer, set from another thread, woke its loop every time; and every deadline once woke this
/// thread again when it came, long after its wait had ended: a wake-up per libvirt call.)
///
/// Actions run on the timer thread, one after the other: they must be short and never block.
final class Deadlines: Sendable {
    static let shared = Deadlines()

    /// The longest the thread sleeps: how late a settled wait's entry may be dropped, and so
    /// which deadlines need no wake-up when they are set.
    static let look = Duration.seconds(1)

    private struct Entry {
        let due: ContinuousClock.Instant
        /// Whether the action still has something to do; once false, the entry is dropped unrun.
        let pending: @Sendable () -> Bool
        let action: @Sendable () -> Void
    }

    private struct State {
        /// A binary min-heap on `due`.
        var heap: [Entry] = []
        /// When the thread looks next, unless woken.
        var nextLook = ContinuousClock.now
        var stopped = false
    }

    private let state = Mutex(State())
    private let changed = DispatchSemaphore(value: 0)

    /// A timer thread of its own (tests; the daemons share `shared`).
    init() {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            Unmanaged<Deadlines>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(created == 0, "cannot start the deadline thread")
        pthread_detach(thread)
    }

    /// Runs `action` at `due` (at once if it has passed), unless `pending` says by then that
    /// there is nothing left to do. `pending` is called under this timer's lock: it must only
    /// read a flag.
    func at(_ due: ContinuousClock.Instant, pending: @escaping @Sendable () -> Bool = { true }, _ action: @escaping @Sendable () -> Void) {
        let wake = state.withLock { state in
            state.heap.append(Entry(due: due, pending: pending, action: action))
            var child = state.heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard state.heap[child].due < state.heap[parent].due else { break }
                state.heap.swapAt(child, parent)
                child = parent
            }
            guard due < state.nextLook else { return false }
            state.nextLook = due
            return true
        }
        if wake { changed.signal() }
    }

    /// Ends the thread (tests); deadlines not yet due never run.
    func stop() {
        state.withLock { $0.stopped = true }
        changed.signal()
    }

    private func run() {
        while true {
            let (due, nextLook, stopped) = state.withLock { state in
                var due: [@Sendable () -> Void] = []
                let now = ContinuousClock.now
                while let first = state.heap.first {
                    let pending = first.pending()
                    guard first.due <= now || !pending else { break }
                    if pending { due.append(first.action) }
                    Self.removeFirst(&state.heap)
                }
                state.nextLook = min(state.heap.first?.due ?? .now + Self.look, now + Self.look)
                return (due, state.nextLook, state.stopped)
            }
            if stopped { return }
            for action in due { action() }
            let wait = nextLook - .now
            if wait > .zero {
                let (seconds, attoseconds) = wait.components
                _ = changed.wait(timeout: .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)))
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
