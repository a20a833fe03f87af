#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Cryptography
import FenceConfig
import FenceWire

/// fence_xvm's side of the protocol, so an operator on a host can send a request through the
/// router as a guest would. Blocking socket calls bounded by `poll`: right in a command-line tool
/// that does one thing at a time (and keeps no task pool waiting).
struct XVMClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let key: FenceKey
    /// The packet's signature; the router's `hash` is the weakest it accepts.
    let hash: HashAlgorithm
    /// The challenge-response digest; it must be the router's `auth`.
    let auth: HashAlgorithm
    let deadline: ContinuousClock.Instant

    /// Multicasts the request to the listener's group, as fence_xvm does, and serves the router's
    /// call-back. The packet leaves through the listener's interface (or as routed) and loops back
    /// to a router on this host; its call-back address is this host's address on that interface.
    func request(_ operation: FenceOperation, domain: String, multicast settings: MulticastListenerSettings) throws(Failure) -> UInt8 {
        let (callback, interfaceIndex) = try Self.callbackAddress(interface: settings.interface, family: settings.family)
        let listener = try Socket(family: settings.family, type: SOCK_STREAM)
        try listener.bind(callback, port: 0)
        try listener.check(listen(listener.descriptor, 4), "listen")
        let request = try signed(operation, domain: domain, callback: callback, port: listener.localPort())

        let sender = try Socket(family: settings.family, type: SOCK_DGRAM)
        try sender.prepareMulticast(interfaceIndex: interfaceIndex)
        // Sent again every two seconds until a router calls back, as fence_xvm retransmits.
        while ContinuousClock.now < deadline {
            try sender.send(request.bytes, to: settings.group, port: settings.port)
            if try listener.waitUntilReady(until: min(deadline, .now + .seconds(2))) {
                return try exchange(on: listener.accept())
            }
        }
        throw Failure(description: "no router called back before the deadline")
    }

    /// Sends the request on a connection to the listener, as `fence_virt -T` does.
    func request(_ operation: FenceOperation, domain: String, tcp settings: TCPListenerSettings) throws(Failure) -> UInt8 {
        let request = try signed(operation, domain: domain, callback: nil, port: 0)
        let connection = try Socket(family: settings.address.family, type: SOCK_STREAM)
        try connection.connect(settings.address, port: settings.port, until: deadline)
        try connection.write(request.bytes, until: deadline)
        return try exchange(on: connection)
    }

    /// A request as fence_xvm makes one: a random sequence number below 10^6, six random bytes
    /// before the signature. Over tcp there is no call-back address.
    private func signed(_ operation: FenceOperation, domain: String, callback: CallbackAddress?, port: UInt16) throws(Failure) -> FenceRequest {
        var request: FenceRequest
        do {
            request = try FenceRequest(operation: operation, hash: hash, domain: domain, callback: callback, port: port,
                                       seqno: UInt32.random(in: 0..<1_000_000))
        } catch {
            throw Failure(description: "\(domain): \(error)")
        }
        request.sign(key: key, random: SecureRandom.bytes(6))
        return request
    }

    /// Both proofs of the key (ours first, as the client challenges first), then the result byte.
    private func exchange(on connection: Socket) throws(Failure) -> UInt8 {
        if auth != .none {
            let exchange = ChallengeResponse(key: key, algorithm: auth)
            let challenge = SecureRandom.bytes(ChallengeResponse.length)
            try connection.write(challenge, until: deadline)
            let response = try connection.read(ChallengeResponse.length, until: deadline)
            guard response.count == ChallengeResponse.length else {
                throw Failure(description: "the router closed the connection: it did not accept the request (another key, or a weaker signature than it accepts?)")
            }
            guard exchange.isValid(response: response, to: challenge) else {
                throw Failure(description: "the router's answer to our challenge is wrong: another key or another auth digest")
            }
            try connection.write(exchange.response(to: try connection.read(ChallengeResponse.length, until: deadline)), until: deadline)
        }
        guard let result = try connection.read(1, until: deadline).first else {
            throw Failure(description: "the router closed the connection without a result")
        }
        return result
    }

    /// The address the router should call back, and the interface the request leaves by.
    private static func callbackAddress(interface: String?, family: CallbackAddress.Family) throws(Failure) -> (CallbackAddress, UInt32) {
        guard let interface else {
            return (CallbackAddress(family == .ipv4 ? "127.0.0.1" : "::1")!, 0)
        }
        let index = if_nametoindex(interface)
        guard index != 0 else { throw Failure(description: "there is no interface named \"\(interface)\"") }
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { throw Failure(description: "cannot read the interfaces' addresses") }
        defer { freeifaddrs(list) }
        var entry = list
        while let current = entry?.pointee {
            defer { entry = current.ifa_next }
            guard let socketAddress = current.ifa_addr, String(cString: current.ifa_name) == interface else { continue }
            if family == .ipv4, socketAddress.pointee.sa_family == sa_family_t(AF_INET) {
                let bytes = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) } }
                if let address = CallbackAddress(family: .ipv4, bytes: bytes) { return (address, index) }
            } else if family == .ipv6, socketAddress.pointee.sa_family == sa_family_t(AF_INET6) {
                let bytes = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) } }
                if let address = CallbackAddress(family: .ipv6, bytes: bytes), address.isUsableForCallback { return (address, index) }
            }
        }
        throw Failure(description: "interface \(interface) has no \(family == .ipv4 ? "IPv4" : "global IPv6") address to be called back on")
    }
}

/// A socket descriptor, closed with its owner, whose calls wait with `poll` up to a deadline.
private final class Socket {
    let descriptor: Int32
    let family: CallbackAddress.Family

    init(family: CallbackAddress.Family, type: __socket_type) throws(XVMClient.Failure) {
        self.family = family
        descriptor = socket(family == .ipv4 ? AF_INET : AF_INET6, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw XVMClient.Failure(description: "socket: \(String(cString: strerror(errno)))") }
    }

    private init(descriptor: Int32, family: CallbackAddress.Family) {
        self.descriptor = descriptor
        self.family = family
    }

    deinit { close(descriptor) }

    func check(_ result: Int32, _ call: String) throws(XVMClient.Failure) {
        guard result >= 0 else { throw XVMClient.Failure(description: "\(call): \(String(cString: strerror(errno)))") }
    }

    /// Runs `body` with the address as a `sockaddr`.
    private func withAddress<T>(_ address: CallbackAddress, port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        if address.family == .ipv4 {
            var storage = sockaddr_in()
            storage.sin_family = sa_family_t(AF_INET)
            storage.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &storage.sin_addr) { $0.copyBytes(from: address.bytes) }
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        var storage = sockaddr_in6()
        storage.sin6_family = sa_family_t(AF_INET6)
        storage.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &storage.sin6_addr) { $0.copyBytes(from: address.bytes) }
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
    }

    func bind(_ address: CallbackAddress, port: UInt16) throws(XVMClient.Failure) {
        try check(withAddress(address, port: port) { Glibc.bind(descriptor, $0, $1) }, "bind to \(address)")
    }

    func localPort() throws(XVMClient.Failure) -> UInt16 {
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let result = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
        try check(result, "getsockname")
        // sin_port and sin6_port sit at the same offset.
        return UInt16(bigEndian: storage.sin6_port)
    }

    func prepareMulticast(interfaceIndex: UInt32) throws(XVMClient.Failure) {
        var loop: Int32 = 1
        var hops: Int32 = 2
        if family == .ipv4 {
            var request = ip_mreqn()
            request.imr_ifindex = Int32(interfaceIndex)
            try check(setsockopt(descriptor, Int32(IPPROTO_IP), IP_MULTICAST_IF, &request, socklen_t(MemoryLayout<ip_mreqn>.size)), "IP_MULTICAST_IF")
            try check(setsockopt(descriptor, Int32(IPPROTO_IP), IP_MULTICAST_LOOP, &loop, 4), "IP_MULTICAST_LOOP")
            try check(setsockopt(descriptor, Int32(IPPROTO_IP), IP_MULTICAST_TTL, &hops, 4), "IP_MULTICAST_TTL")
        } else {
            var index = interfaceIndex
            try check(setsockopt(descriptor, Int32(IPPROTO_IPV6), IPV6_MULTICAST_IF, &index, 4), "IPV6_MULTICAST_IF")
            try check(setsockopt(descriptor, Int32(IPPROTO_IPV6), IPV6_MULTICAST_LOOP, &loop, 4), "IPV6_MULTICAST_LOOP")
            try check(setsockopt(descriptor, Int32(IPPROTO_IPV6), IPV6_MULTICAST_HOPS, &hops, 4), "IPV6_MULTICAST_HOPS")
        }
    }

    func send(_ bytes: [UInt8], to group: CallbackAddress, port: UInt16) throws(XVMClient.Failure) {
        let sent = withAddress(group, port: port) { address, length in sendto(descriptor, bytes, bytes.count, 0, address, length) }
        guard sent == bytes.count else { throw XVMClient.Failure(description: "sending to \(group) port \(port): \(String(cString: strerror(errno)))") }
    }

    /// Waits until the descriptor is readable (or writable); false when the deadline passes first.
    func waitUntilReady(until deadline: ContinuousClock.Instant, writable: Bool = false) throws(XVMClient.Failure) -> Bool {
        while true {
            let remaining = deadline - .now
            guard remaining > .zero else { return false }
            var entry = pollfd(fd: descriptor, events: Int16(writable ? POLLOUT : POLLIN), revents: 0)
            let milliseconds = remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1
            let ready = poll(&entry, 1, Int32(min(milliseconds, 60_000)))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { try check(ready, "poll") }
        }
    }

    func accept() throws(XVMClient.Failure) -> Socket {
        let connection = Glibc.accept(descriptor, nil, nil)
        try check(connection, "accept")
        return Socket(descriptor: connection, family: family)
    }

    func connect(_ address: CallbackAddress, port: UInt16, until deadline: ContinuousClock.Instant) throws(XVMClient.Failure) {
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        let started = withAddress(address, port: port) { Glibc.connect(descriptor, $0, $1) }
        if started < 0 && errno != EINPROGRESS { try check(started, "connect to \(address) port \(port)") }
        guard try waitUntilReady(until: deadline, writable: true) else { throw XVMClient.Failure(description: "connect to \(address) port \(port): timed out") }
        var error: Int32 = 0
        var length = socklen_t(4)
        getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else { throw XVMClient.Failure(description: "connect to \(address) port \(port): \(String(cString: strerror(error)))") }
    }

    func write(_ bytes: [UInt8], until deadline: ContinuousClock.Instant) throws(XVMClient.Failure) {
        var offset = 0
        while offset < bytes.count {
            guard try waitUntilReady(until: deadline, writable: true) else { throw XVMClient.Failure(description: "the router stopped reading") }
            let count = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            try check(Int32(clamping: count), "write")
            offset += count
        }
    }

    /// Exactly `count` bytes, or fewer when the peer closes.
    func read(_ count: Int, until deadline: ContinuousClock.Instant) throws(XVMClient.Failure) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        while bytes.count < count {
            guard try waitUntilReady(until: deadline) else { throw XVMClient.Failure(description: "no answer from the router before the deadline") }
            let received = Glibc.recv(descriptor, &buffer, count - bytes.count, 0)
            if received < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            try check(Int32(clamping: received), "read")
            if received == 0 { break }
            bytes += buffer[..<received]
        }
        return bytes
    }
}
