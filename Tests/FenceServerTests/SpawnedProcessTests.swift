#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import TestSupport

/// The processes the tests start (brokers, libvirtd, daemons, scripts) must not hold the test
/// process's sockets: SwiftNIO opens them without close-on-exec, and an inherited copy keeps a
/// connection open after the test closed it.
@Suite("Processes the tests start")
struct SpawnedProcessTests {
    @Test("a started process holds none of the test process's descriptors but stdin, stdout and stderr")
    func noInheritedSockets() async throws {
        // A socket as NIO makes one: no SOCK_CLOEXEC.
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(socket >= 0)
        defer { close(socket) }
        var status = stat()
        try #require(fstat(socket, &status) == 0)
        let listing = try await Command.check(["sh", "-c", "ls -l /proc/$$/fd/"])
        #expect(!listing.output.contains("socket:[\(status.st_ino)]"), "\(listing.output)")
        #expect(listing.output.contains("0 ->"), "the listing shows the descriptors: \(listing.output)")
    }
}
