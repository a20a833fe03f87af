#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum Hostname {
    /// This machine's host name (the default host and router ids on the bus).
    public static func current() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
