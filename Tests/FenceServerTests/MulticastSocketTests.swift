import Glibc
import FenceWire
import Testing
@testable import FenceServer

@Suite("Multicast socket")
struct MulticastSocketTests {
    @Test("a datagram's arrival is when it reached the host, not when it was read")
    func arrivalIsTheKernels() async throws {
        // Joined on loopback, sent to 127.0.0.1: nothing is sent anywhere else.
        let group = try #require(CallbackAddress("239.255.42.98"))
        let socket = try MulticastSocket(group: group, port: 0, interfaceIndex: Int(if_nametoindex("lo")))
        let sender = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(sender) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: socket.port.bigEndian, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        // The kernel turns its receive time stamps on a moment after the first socket asks (a
        // deferred switch): a datagram that arrives before that is stamped when it is read. The
        // first one after must carry its arrival.
        for _ in 1...5 {
            let before = ContinuousClock.now
            let sent = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(sender, [UInt8](repeating: 1, count: 10), 10, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let after = ContinuousClock.now
            #expect(sent == 10)
            // The scene itself: the datagram waits in the queue, as behind a backlog or in a
            // daemon that was stopped for a while.
            try await Task.sleep(for: .milliseconds(300))
            let datagram = try #require(try socket.receive())
            let read = ContinuousClock.now
            guard read - datagram.arrival < .milliseconds(250) else {
                #expect(datagram.arrival >= before - .milliseconds(5), "\(before - datagram.arrival) before the send")
                #expect(datagram.arrival <= after + .milliseconds(50), "\(datagram.arrival - after) after the send")
                return
            }
        }
        Issue.record("five datagrams that waited 300 ms in the queue each arrived, it says, when they were read")
    }
}
