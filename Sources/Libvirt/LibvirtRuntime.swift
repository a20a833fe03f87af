import CLibvirt
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// Process-wide libvirt set-up. Before the first connection: ignore SIGPIPE (libvirt writes to
/// sockets whose peer may be gone, and the default action kills the process) and silence
/// libvirt's default error printer (errors are reported through `LibvirtError`).
///
/// The default event loop, which lifecycle events, keepalives and close callbacks need, is
/// registered only when a connection asks for events: once registered, libvirt makes every API
/// call markedly slower (measured: about twice as slow listing a test-driver host), and a daemon
/// that only fences does not need it. It must be registered before the connections that use it
/// are opened, and runs on its own OS thread, which it never leaves.
enum LibvirtRuntime {
    private static let state = Mutex((prepared: false, eventLoop: false))

    /// Prepares libvirt; returns whether the event loop runs.
    static func prepare(eventLoop wanted: Bool) -> Bool {
        state.withLock { state in
            if !state.prepared {
                signal(SIGPIPE, SIG_IGN)
                virSetErrorFunc(nil, discardError)
                state.prepared = true
            }
            if wanted && !state.eventLoop {
                state.eventLoop = virEventRegisterDefaultImpl() == 0 && startEventThread()
            }
            return state.eventLoop
        }
    }

    private static func startEventThread() -> Bool {
        var thread = pthread_t()
        return pthread_create(&thread, nil, { _ in
            while true { _ = virEventRunDefaultImpl() }
        }, nil) == 0
    }
}

private func discardError(_ userData: UnsafeMutableRawPointer?, _ error: virErrorPtr?) {}
