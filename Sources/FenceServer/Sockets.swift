#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FenceWire

/// Calls `body` with the socket address of `bytes` (4 for IPv4, 16 for IPv6) and `port`, and its
/// length: for bind(2) and connect(2) on the front end's plain sockets.
func withSocketAddress<T>(_ family: CallbackAddress.Family, _ bytes: [UInt8], port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
    switch family {
    case .ipv4:
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: bytes) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    case .ipv6:
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: bytes) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }
}

/// close(2), for types whose own `close()` hides it.
func closeDescriptor(_ descriptor: Int32) {
    close(descriptor)
}
