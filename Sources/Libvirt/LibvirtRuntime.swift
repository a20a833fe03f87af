import CLibvirt
import Foundation

/// Process-wide libvirt set-up, done once before the first connection: ignore SIGPIPE (libvirt
/// writes to sockets whose peer may be gone, and the default action kills the process), silence
/// libvirt's default error printer (errors are reported through `LibvirtError`), register the
/// default event loop and give it its own OS thread, which it never leaves. Keepalives, close
/// callbacks and lifecycle events all need that loop.
enum LibvirtRuntime {
    static let initialised: Bool = {
        signal(SIGPIPE, SIG_IGN)
        virSetErrorFunc(nil, discardError)
        guard virEventRegisterDefaultImpl() == 0 else { return false }
        let thread = Thread {
            while true {
                _ = virEventRunDefaultImpl()
            }
        }
        thread.name = "libvirt-events"
        thread.start()
        return true
    }()
}

private func discardError(_ userData: UnsafeMutableRawPointer?, _ error: virErrorPtr?) {}
