import Foundation
import Testing
import TestSupport

@Suite("fencectl keygen")
struct KeygenTests {
    @Test("writes 4096 random bytes, mode 0600, and never replaces an existing file")
    func keygen() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-keygen")
        let path = directory.url.appendingPathComponent("fence_xvm.key").path
        let fencectl = try Products.path("fencectl")

        let first = try await Command.run([fencectl, "keygen", path])
        #expect(first.status == 0, "\(first)")
        let key = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(key.count == 4096)
        #expect(Set(key).count > 200, "random bytes, not a pattern")
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)

        let again = try await Command.run([fencectl, "keygen", path])
        #expect(again.status != 0)
        #expect(again.error.contains("exists"), "\(again)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == key, "the existing key is untouched")

        let bus = directory.url.appendingPathComponent("bus.key").path
        #expect(try await Command.run([fencectl, "keygen", "--bytes", "64", bus]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: bus)).count == 64)
        #expect(try await Command.run([fencectl, "keygen", "--bytes", "8", directory.url.appendingPathComponent("short").path]).status != 0)
    }
}
