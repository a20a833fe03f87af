#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
@testable import DaemonSupport
import Foundation
import Synchronization
import Testing
import TestSupport

@Suite("systemd notifications")
struct ServiceManagerTests {
    @Test("a service manager that does not read never blocks the sender: 100 notifications into a full queue return")
    func neverBlocks() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-notify")
        let path = directory.path("notify")
        let receiver = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(receiver >= 0)
        defer { close(receiver) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(receiver, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0)
        // The kernel queues ten datagrams (net.unix.max_dgram_qlen) for a socket nobody reads. On
        // a thread of its own, so that a send that blocks fails this test instead of hanging it.
        let sent = Mutex(0)
        Thread {
            for _ in 0..<100 {
                ServiceManager.notify("WATCHDOG=1", socket: Array(path.utf8))
                sent.withLock { $0 += 1 }
            }
        }.start()
        try await waitUntil("100 notifications to a socket nobody reads") { sent.withLock { $0 } == 100 }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = recv(receiver, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        #expect(count > 0 && String(decoding: buffer[..<count], as: UTF8.self) == "WATCHDOG=1", "the first ones were queued")
    }
}
