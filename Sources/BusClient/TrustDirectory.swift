#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Cryptography
import FenceBus
import FenceConfig
import Logging
import Synchronization

/// The public keys a daemon believes, one PEM file per sender: `hosts/NAME.pub`,
/// `routers/NAME.pub`, `operators/NAME.pub`. Files are read when a sender is first heard and read
/// again, if they changed, at most every `recheck`: a new host, a rotated key or a removed one
/// counts without a restart. A file that anyone but its owner may write is refused (whoever can
/// write it can speak as that sender).
public final class TrustDirectory: BusTrust {
    public let path: String
    private let recheck: Duration
    private let cache = Mutex<[BusPeer: Entry]>([:])
    private let listed = Mutex<[BusRole: (names: [String], checkedAt: ContinuousClock.Instant)]>([:])
    private let logger: Logger

    struct Entry {
        var key: VerifyingKey?
        var stamp: FileStamp?
        var checkedAt: ContinuousClock.Instant
    }

    struct FileStamp: Equatable {
        let inode: UInt64
        let size: Int64
        let modified: Int64
        let modifiedNanoseconds: Int64
    }

    public init(path: String, recheck: Duration = BusSettings.trustRecheck, logger: Logger) {
        self.path = path
        self.recheck = recheck
        self.logger = logger
    }

    public func verifyingKey(role: BusRole, name: String) -> VerifyingKey? {
        // Before the cache: strings compare by Unicode equivalence, so an invalid spelling of a
        // cached name would find its entry.
        guard BusIdentity.isValidName(name) else { return nil }
        let key = BusPeer(role: role, name: name)
        let now = ContinuousClock.now
        if let entry = cache.withLock({ $0[key] }), now - entry.checkedAt < recheck {
            return entry.key
        }
        let file = "\(path)/\(role.directory)/\(name).pub"
        let stamp = Self.stamp(of: file)
        let previous = cache.withLock { $0[key] }
        var entry = Entry(key: previous?.key, stamp: stamp, checkedAt: now)
        if stamp != previous?.stamp || previous == nil {
            entry.key = load(file, stamp: stamp)
        }
        cache.withLock { $0[key] = entry }
        return entry.key
    }

    /// The names filed under `role`, for tools and start-up checks.
    /// Every name filed under `role`, read again at most every `recheck`.
    public func names(role: BusRole) -> [String] {
        let now = ContinuousClock.now
        if let last = listed.withLock({ $0[role] }), now - last.checkedAt < recheck { return last.names }
        let names = list(role: role)
        listed.withLock { $0[role] = (names, now) }
        return names
    }

    private func list(role: BusRole) -> [String] {
        guard let directory = opendir("\(path)/\(role.directory)") else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.hasSuffix(".pub") else { continue }
            let stem = String(name.dropLast(4))
            if BusIdentity.isValidName(stem) { names.append(stem) }
        }
        return names.sorted()
    }

    private func load(_ file: String, stamp: FileStamp?) -> VerifyingKey? {
        guard stamp != nil else { return nil }
        let descriptor = open(file, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            logger.error("trusted key unreadable", metadata: ["file": "\(file)", "errno": "\(errno)"])
            return nil
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
            logger.error("trusted key refused: writable by others than its owner", metadata: ["file": "\(file)"])
            return nil
        }
        var contents: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while contents.count <= 16_384 {
            let count = read(descriptor, &buffer, buffer.count)
            if count <= 0 { break }
            contents += buffer[0..<count]
        }
        do {
            let key = try VerifyingKey(pem: contents)
            logger.info("trusted key read", metadata: ["file": "\(file)"])
            return key
        } catch {
            logger.error("trusted key refused", metadata: ["file": "\(file)", "error": "\(error)"])
            return nil
        }
    }

    private static func stamp(of file: String) -> FileStamp? {
        var status = stat()
        guard stat(file, &status) == 0 else { return nil }
        return FileStamp(inode: UInt64(status.st_ino), size: Int64(status.st_size),
                         modified: Int64(status.st_mtim.tv_sec), modifiedNanoseconds: Int64(status.st_mtim.tv_nsec))
    }
}
