import JSONValue
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

    /// The saved state; nothing saved yet when the file does not exist. A file that exists but
    /// cannot be read or parsed is an error: starting without it would forget the learned hosts,
    /// and a router that no longer expects a host answers "off" for its domains.
    func load() throws(StoreError) -> Saved {
        guard let file = fopen(path, "r") else {
            if errno == ENOENT { return Saved() }
            throw StoreError(path: path, reason: String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        guard ferror(file) == 0 else { throw StoreError(path: path, reason: String(cString: strerror(errno))) }
        let json: JSON
        do {
            json = try JSON(parsing: bytes)
        } catch {
            throw StoreError(path: path, reason: "not the JSON this router writes (\(error)); move it aside only if the hosts it listed are all known")
        }
        func names(_ key: String) throws(StoreError) -> [String] {
            guard let list = json[key]?.arrayValue else { throw StoreError(path: path, reason: "\"\(key)\" is not a list") }
            return try list.map { (item: JSON) throws(StoreError) -> String in
                guard let name = item.stringValue else { throw StoreError(path: path, reason: "\"\(key)\" holds something that is not a host name") }
                return name
            }
        }
        return Saved(learned: try names("learned"), confirmedDown: try names("confirmedDown"))
    }

    /// Writes to a temporary file, then renames it over the old one.
    func save(_ saved: Saved) throws(StoreError) {
        let document = JSON.object([
            ("learned", .array(saved.learned.sorted().map(JSON.string))),
            ("confirmedDown", .array(saved.confirmedDown.sorted().map(JSON.string))),
        ]).encoded()
        let temporary = path + ".new"
        guard let file = fopen(temporary, "w") else { throw StoreError(path: temporary, reason: String(cString: strerror(errno))) }
        let written = fwrite(document, 1, document.count, file)
        let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
        fclose(file)
        guard written == document.count, flushed, rename(temporary, path) == 0 else { throw StoreError(path: path, reason: String(cString: strerror(errno))) }
    }

    struct StoreError: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "\(path): \(reason)" }
    }
}
