import Foundation
import TestSupport
import Testing
@testable import FenceRouter

@Suite("The hosts a router keeps")
struct HostStateStoreTests {
    @Test("saved and loaded again; no file is nothing saved yet")
    func roundTrip() throws {
        let directory = try TemporaryDirectory(prefix: "fr-hosts")
        let store = HostStateStore(directory: directory.url.path)
        #expect(try store.load() == HostStateStore.Saved())
        let saved = HostStateStore.Saved(learned: ["hv1", "hv2"], confirmedDown: ["hv2"])
        try store.save(saved)
        #expect(try store.load() == saved)
    }

    @Test("a file that cannot be read or parsed stops the start, naming the file: learned hosts are never silently forgotten",
          arguments: ["", "{", "{\"learned\":\"hv1\",\"confirmedDown\":[]}", "{\"learned\":[1],\"confirmedDown\":[]}", "{\"confirmedDown\":[]}"])
    func unreadable(contents: String) throws {
        let directory = try TemporaryDirectory(prefix: "fr-hosts")
        let store = HostStateStore(directory: directory.url.path)
        try contents.write(toFile: store.path, atomically: true, encoding: .utf8)
        #expect(throws: HostStateStore.StoreError.self) { try store.load() }
        do {
            _ = try store.load()
        } catch {
            #expect(error.description.hasPrefix(store.path))
        }
    }
}
