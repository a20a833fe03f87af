#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FenceWire

/// The multicast listener's socket, read with plain recvmsg(2) by a request thread: the thread
/// that receives a request goes on to serve it, so nothing waits for another thread to wake up
/// before the call-back's SYN leaves (each such wake-up was measured at 50–250 µs here).
final class MulticastSocket: Sendable {
    /// One datagram as it arrived.
    struct Datagram {
        let bytes: [UInt8]
        let source: CallbackAddress?
        /// The interface it arrived on; nil when the kernel did not say (never expected).
        let interfaceIndex: Int?
        /// When it reached the host (the kernel's time stamp), however long it then waited to be
        /// read: the request history judges copies by it.
        let arrival: ContinuousClock.Instant
    }

    private let descriptor: Int32
    private let family: CallbackAddress.Family
    /// A pipe whose write end `stop()` writes to, waking the thread that waits in `receive()`.
    private let wake: (read: Int32, write: Int32)

    /// Binds the port and joins the group on `interfaceIndex` (0: as the routing table says).
    init(group: CallbackAddress, port: UInt16, interfaceIndex: Int) throws(ListenerError) {
        family = group.family
        let ipv4 = group.family == .ipv4
        descriptor = socket(ipv4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw Self.failure(.bindFailed, "socket") }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else {
            let error = Self.failure(.bindFailed, "pipe")
            closeDescriptor(descriptor)
            throw error
        }
        wake = (pipeEnds[0], pipeEnds[1])
        _ = fcntl(wake.read, F_SETFD, FD_CLOEXEC)
        _ = fcntl(wake.write, F_SETFD, FD_CLOEXEC)
        do throws(ListenerError) {
            try option(SOL_SOCKET, 35 /* SO_TIMESTAMPNS */, Int32(1), .bindFailed)
            if ipv4 {
                // The interface each datagram arrived on, checked per packet.
                try option(Int32(IPPROTO_IP), IP_PKTINFO, Int32(1), .bindFailed)
                try bindSocket(port: port)
                var request = ip_mreqn()
                withUnsafeMutableBytes(of: &request.imr_multiaddr) { $0.copyBytes(from: group.bytes) }
                request.imr_ifindex = Int32(interfaceIndex)
                try option(Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, request, .joinFailed)
                // Not the groups that other sockets of the host joined.
                try option(Int32(IPPROTO_IP), 49 /* IP_MULTICAST_ALL */, Int32(0), .joinFailed)
            } else {
                // IPv6 only, so that an IPv4 listener on the same port can run beside it.
                try option(Int32(IPPROTO_IPV6), IPV6_V6ONLY, Int32(1), .bindFailed)
                try option(Int32(IPPROTO_IPV6), 49 /* IPV6_RECVPKTINFO */, Int32(1), .bindFailed)
                try bindSocket(port: port)
                var request = ipv6_mreq()
                withUnsafeMutableBytes(of: &request.ipv6mr_multiaddr) { $0.copyBytes(from: group.bytes) }
                request.ipv6mr_interface = UInt32(interfaceIndex)
                try option(Int32(IPPROTO_IPV6), IPV6_ADD_MEMBERSHIP, request, .joinFailed)
                try option(Int32(IPPROTO_IPV6), 29 /* IPV6_MULTICAST_ALL */, Int32(0), .joinFailed)
            }
        } catch {
            closeDescriptor(descriptor)
            closeDescriptor(wake.read)
            closeDescriptor(wake.write)
            throw error
        }
    }

    deinit {
        closeDescriptor(descriptor)
        closeDescriptor(wake.read)
        closeDescriptor(wake.write)
    }

    /// The port bound (the kernel's choice when the settings said 0).
    var port: UInt16 {
        var address = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        // sin_port and sin6_port lie at the same offset.
        return named == 0 ? UInt16(bigEndian: address.sin6_port) : 0
    }

    /// The next datagram; nil once `stop()` was called. Blocks the calling thread.
    func receive() throws(ListenerError) -> Datagram? {
        var entries = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
        while true {
            entries[0].revents = 0
            entries[1].revents = 0
            let ready = poll(&entries, 2, -1)
            if ready < 0 {
                guard errno == EINTR else { throw Self.failure(.receiveFailed, "poll") }
                continue
            }
            if entries[1].revents != 0 { return nil }
            if let datagram = try read() { return datagram }
        }
    }

    /// Makes `receive()` return nil, now and from then on.
    func stop() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    /// One datagram if one is waiting (nil when another reader took it).
    private func read() throws(ListenerError) -> Datagram? {
        // Buffers on the stack (Swift puts up to 1 KB there): a fresh zeroed array per datagram
        // cost as much as reading it. A longer datagram arrives cut to 1 KB and is dropped for its
        // length like any other that is not 176 bytes.
        try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { buffer throws(ListenerError) -> Datagram? in
            try withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 16) { control throws(ListenerError) -> Datagram? in
                var source = sockaddr_storage()
                var flags: Int32 = 0
                var controlLength = 0
                let count = withUnsafeMutableBytes(of: &source) { sourceBuffer in
                    var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
                    return withUnsafeMutablePointer(to: &vector) { vector in
                        var message = msghdr()
                        message.msg_name = sourceBuffer.baseAddress
                        message.msg_namelen = socklen_t(sourceBuffer.count)
                        message.msg_iov = vector
                        message.msg_iovlen = 1
                        message.msg_control = UnsafeMutableRawPointer(control.baseAddress)
                        message.msg_controllen = control.count * MemoryLayout<UInt64>.size
                        let count = recvmsg(descriptor, &message, Int32(MSG_DONTWAIT))
                        (flags, controlLength) = (message.msg_flags, min(Int(message.msg_controllen), control.count * MemoryLayout<UInt64>.size))
                        return count
                    }
                }
                guard count >= 0 else {
                    guard errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR else { throw Self.failure(.receiveFailed, "recvmsg") }
                    return nil
                }
                // Cut control messages might have lost the packet information: then no interface is
                // known, and the datagram counts as arrived now.
                let (interface, stamp) = flags & Int32(MSG_CTRUNC) == 0
                    ? controlMessages(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(control)[..<controlLength])) : (nil, nil)
                return Datagram(bytes: Array(buffer[..<count]), source: Self.address(source), interfaceIndex: interface, arrival: Self.instant(of: stamp))
            }
        }
    }

    private static func address(_ storage: sockaddr_storage) -> CallbackAddress? {
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: storage) { raw in
            switch family {
            case AF_INET:
                let offset = MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!
                return CallbackAddress(family: .ipv4, bytes: Array(raw[offset..<(offset + 4)]))
            case AF_INET6:
                let offset = MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!
                return CallbackAddress(family: .ipv6, bytes: Array(raw[offset..<(offset + 16)]))
            default:
                return nil
            }
        }
    }

    /// The interface index of the packet-information control message and the kernel's time
    /// stamp (`CLOCK_REALTIME`).
    /// - Parameter raw: the control messages, as long as the kernel wrote them.
    private func controlMessages(_ raw: UnsafeRawBufferPointer) -> (interface: Int?, stamp: Duration?) {
        // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; data... }, each
        // message aligned to a size_t.
        let header = MemoryLayout<Int>.size + 8
        var found: (interface: Int?, stamp: Duration?) = (nil, nil)
        var offset = 0
        while offset + header <= raw.count {
            let length = raw.loadUnaligned(fromByteOffset: offset, as: Int.self)
            guard length >= header, length <= raw.count - offset else { break }
            let level = raw.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size, as: Int32.self)
            let type = raw.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size + 4, as: Int32.self)
            let data = offset + header
            if level == SOL_SOCKET, type == 35 /* SCM_TIMESTAMPNS */, length >= header + 16 {
                // struct timespec { time_t tv_sec; long tv_nsec; }
                found.stamp = .seconds(raw.loadUnaligned(fromByteOffset: data, as: Int.self))
                    + .nanoseconds(raw.loadUnaligned(fromByteOffset: data + 8, as: Int.self))
            } else if family == .ipv4, level == IPPROTO_IP, type == IP_PKTINFO, length >= header + 12 {
                // struct in_pktinfo { int ipi_ifindex; ... }
                found.interface = Int(raw.loadUnaligned(fromByteOffset: data, as: Int32.self))
            } else if family == .ipv6, level == IPPROTO_IPV6, type == 50 /* IPV6_PKTINFO */, length >= header + 20 {
                // struct in6_pktinfo { struct in6_addr ipi6_addr; unsigned ipi6_ifindex; }
                found.interface = Int(raw.loadUnaligned(fromByteOffset: data + 16, as: UInt32.self))
            }
            offset += (length + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
        }
        return found
    }

    /// The kernel's wall-clock stamp as an instant of the continuous clock: now, less how long
    /// ago the wall clock says it was. A wall clock stepped meanwhile moves it, never past now
    /// (when it was read, as before time stamps): back, a copy looks younger; forward, older,
    /// which makes it a copy or late.
    private static func instant(of stamp: Duration?) -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        guard let stamp else { return now }
        var wall = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        let waited = .seconds(wall.tv_sec) + .nanoseconds(wall.tv_nsec) - stamp
        return waited > .zero ? now - waited : now
    }

    private func option<Value>(_ level: Int32, _ name: Int32, _ value: Value, _ code: ListenerError.Code) throws(ListenerError) {
        let set = withUnsafeBytes(of: value) { setsockopt(descriptor, level, name, $0.baseAddress, socklen_t($0.count)) }
        guard set == 0 else {
            throw Self.failure(code, "setsockopt(\(level), \(name))")
        }
    }

    /// Binds `port` on every address of the socket's family.
    private func bindSocket(port: UInt16) throws(ListenerError) {
        let any = [UInt8](repeating: 0, count: family == .ipv4 ? 4 : 16)
        guard withSocketAddress(family, any, port: port, { bind(descriptor, $0, $1) }) == 0 else { throw Self.failure(.bindFailed, "bind") }
    }

    private static func failure(_ code: ListenerError.Code, _ call: String) -> ListenerError {
        ListenerError(code: code, message: "\(call): \(String(cString: strerror(errno)))")
    }
}
