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

    @Test("--host, --router, --operator: an Ed25519 pair openssl reads, 0600 and 0644, filed in a trust directory; odd names and two roles refused")
    func identities() async throws {
        let directory = try TemporaryDirectory(prefix: "fr-keygen")
        let fencectl = try Products.path("fencectl")
        let key = directory.path("hv1.key"), trust = directory.path("trust")

        let made = try await Command.run([fencectl, "keygen", "--host", "hv1", key, "--trust-directory", trust])
        #expect(made.status == 0, "\(made)")
        #expect(made.output.contains("hosts/hv1.pub"), "\(made)")
        func mode(_ path: String) throws -> Int? {
            (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
        }
        #expect(try mode(key) == 0o600)
        #expect(try mode(directory.path("hv1.pub")) == 0o644)
        let filed = try String(contentsOfFile: "\(trust)/hosts/hv1.pub", encoding: .utf8)
        #expect(filed == (try String(contentsOfFile: directory.path("hv1.pub"), encoding: .utf8)))
        // openssl derives the same public key from the private one: the files are ordinary PKCS #8 and SPKI PEM.
        let derived = try await Command.run(["openssl", "pkey", "-in", key, "-pubout"])
        #expect(derived.status == 0 && derived.output == filed, "\(derived)")
        #expect(try await Command.run(["openssl", "pkey", "-in", key, "-noout", "-text"]).output.contains("ED25519"))

        #expect(try await Command.run([fencectl, "keygen", "--host", "hv1", key]).status != 0, "never over an existing key")
        #expect(try await Command.run([fencectl, "keygen", "--router", "r1", directory.path("r1.key"), "--trust-directory", trust]).status == 0)
        #expect(FileManager.default.fileExists(atPath: "\(trust)/routers/r1.pub"))
        for arguments in [["--host", "../evil"], ["--host", ""], ["--host", "a", "--router", "b"], ["--trust-directory", trust]] {
            let refused = try await Command.run([fencectl, "keygen"] + arguments + [directory.path("x.key")])
            #expect(refused.status != 0, "\(arguments)")
            #expect(!FileManager.default.fileExists(atPath: directory.path("x.key")), "\(arguments)")
        }
    }
}
