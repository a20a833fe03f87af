import FenceBus
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a router keeps across restarts: the hosts it learned (so that after a restart it still
/// expects them, and fails rather than answer "off" for their domains) and operators'
/// confirmations. A small JSON file, replaced atomically.
struct HostStateStore: Sendable {
    struct Saved: Equatable, Sendable {
        var learned: [String] = []
        var confirmedDown: [String] = []
    }

    let path: String

    init(directory: String) {
        path = directory + "/hosts.json"
    }

    func load() -> Saved {
        guard let file = fopen(path, "r") else { return Saved() }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        guard let json = try? JSON(parsing: bytes) else { return Saved() }
        func names(_ key: String) -> [String] { json[key]?.arrayValue?.compactMap(\.stringValue) ?? [] }
        return Saved(learned: names("learned"), confirmedDown: names("confirmedDown"))
    }

    /// Writes to a temporary file, then renames it over the old one.
    func save(_ saved: Saved) throws(SaveError) {
        let document = JSON.object([
            ("learned", .array(saved.learned.sorted().map(JSON.string))),
            ("confirmedDown", .array(saved.confirmedDown.sorted().map(JSON.string))),
        ]).encoded()
        let temporary = path + ".new"
        guard let file = fopen(temporary, "w") else { throw SaveError(path: temporary, code: errno) }
        let written = fwrite(document, 1, document.count, file)
        let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
        fclose(file)
        guard written == document.count, flushed, rename(temporary, path) == 0 else { throw SaveError(path: path, code: errno) }
    }

    struct SaveError: Error, CustomStringConvertible {
        let path: String
        let code: Int32
        var description: String { "\(path): \(String(cString: strerror(code)))" }
    }
}
