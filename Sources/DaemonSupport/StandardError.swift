#if canImport(Glibc)
import Glibc
private let systemWrite = Glibc.write
#elseif canImport(Musl)
import Musl
private let systemWrite = Musl.write
#endif

/// Standard error without Foundation: one write(2) per call, so that lines from several threads
/// do not interleave.
public enum StandardError {
    public static func write(_ text: String) {
        var text = text
        _ = text.withUTF8 { systemWrite(2, $0.baseAddress, $0.count) }
    }
}
