import FenceWire
import Foundation
import Testing
import TestSupport

/// The real Debian fence_xvm against fence-routerd's libvirt backend, in network namespaces the
/// tests create. Every answer is the one fence_virtd 4.12.1 gives.
@Suite("fence_xvm ⇄ fence-routerd, one host", .enabled(if: TestEnvironment.shouldRun(RouterLab.prerequisites), "needs root, iproute2 and fence-virt"))
struct SingleHostTests {
    static let longName = "long-name-64-chars-" + String(repeating: "x", count: 45)

    @Test("list shows every domain of the host, running ones on, with names cut cleanly at 63 bytes")
    func list() async throws {
        let router = try await RouterLab()
        let rows = try await router.list()
        #expect(rows == [
            [String(Self.longName.prefix(63)), "0f0f0f0f-1111-2222-3333-444444444444", "on"],
            ["vm-off", "11111111-2222-3333-4444-555555555555", "off"],
            ["vm-paused", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "off"],
            ["vm1", "6695eb01-f6a4-8304-79aa-97f2502e193f", "on"],
        ])
        #expect(try await router.client(1, "-o", "list-status", "-t", "5").output == router.client(1, "-o", "list", "-t", "5").output)
        #expect(router.daemon.log.contains("domain name longer than 63 bytes is cut"))
    }

    @Test("status: running 0, shut off 2, paused 0, missing 2; monitor 0; null 1")
    func status() async throws {
        let router = try await RouterLab()
        #expect(try await router.status("vm1") == 0)
        #expect(try await router.status("vm-off") == 2)
        #expect(try await router.status("vm-paused") == 0)
        #expect(try await router.status("missing") == 2)
        #expect(try await router.status("VM1") == 2, "names are case-sensitive, as in libvirt")
        let ok = try await router.client(1, "-o", "status", "-H", "vm1", "-t", "5")
        #expect(ok.output.contains("Status: ON"))
        #expect(try await router.client(1, "-o", "monitor", "-t", "5").status == 0)
        #expect(try await router.client(1, "-o", "null", "-H", "vm1", "-t", "5").status == 1)
    }

    @Test("off, on and reboot change the domain, and status follows")
    func offOnReboot() async throws {
        let router = try await RouterLab()
        #expect(try await router.client(1, "-o", "off", "-H", "vm1", "-t", "5").status == 0)
        #expect(try await router.status("vm1") == 2)
        #expect(try await router.client(1, "-o", "off", "-H", "vm1", "-t", "5").status == 0, "off of an off domain succeeds")
        #expect(try await router.client(1, "-o", "reboot", "-H", "vm1", "-t", "5").status == 0, "reboot of an off domain succeeds and leaves it off")
        #expect(try await router.status("vm1") == 2)
        #expect(try await router.client(1, "-o", "on", "-H", "vm1", "-t", "5").status == 0)
        #expect(try await router.status("vm1") == 0)
        #expect(try await router.client(1, "-o", "reboot", "-H", "vm1", "-t", "5").status == 0)
        #expect(try await router.status("vm1") == 0)
        #expect(try await router.client(1, "-o", "off", "-H", "missing", "-t", "5").status == 1)
        #expect(try await router.client(1, "-o", "on", "-H", "missing", "-t", "5").status == 1)
        #expect(try await router.client(1, "-o", "reboot", "-H", "missing", "-t", "5").status == 1)
        let log = router.daemon.log
        #expect(log.contains("op=reboot"))
        #expect(log.contains("outcome=success"))
    }

    @Test("a UUID names its domain in any case, with or without -u")
    func uuidTarget() async throws {
        let router = try await RouterLab()
        #expect(try await router.status("6695EB01-F6A4-8304-79AA-97F2502E193F") == 0)
        #expect(try await router.client(1, "-o", "off", "-u", "-H", "6695eb01-f6a4-8304-79aa-97f2502e193f", "-t", "5").status == 0)
        #expect(try await router.status("vm1") == 2)
        #expect(try await router.status("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee") == 0)
    }

    @Test("a wrong key: the client times out; the daemon logs the first dropped copy and sums up every one")
    func wrongKey() async throws {
        let router = try await RouterLab()
        let wrongKey = try router.directory.write("wrong.key", bytes: Array("another-key-entirely".utf8))
        let result = try await router.client(1, "-o", "off", "-H", "vm1", "-t", "2", "-r", "10", key: wrongKey)
        #expect(result.status == 1)
        #expect(result.error.contains("Timed out") || result.output.contains("Timed out"), "\(result)")
        #expect(try await router.status("vm1") == 0, "nothing was done")
        #expect(router.daemon.log.contains("reason=digest-mismatch"), "the first one in full")
        try await router.daemon.waitForLog("digest-mismatch=2", timeout: .seconds(30))
    }

    @Test("a signature weaker than the configured minimum is dropped")
    func weakHash() async throws {
        let router = try await RouterLab()
        let result = try await router.client(1, "-o", "off", "-H", "vm1", "-c", "sha1", "-C", "sha1", "-t", "2", "-r", "10")
        #expect(result.status == 1)
        #expect(try await router.status("vm1") == 0)
        #expect(router.daemon.log.contains("reason=hash-too-weak"))
        #expect(router.daemon.log.contains("detail=hash-too-weak: sha1 < sha256"))
    }

    @Test("a stronger hash and every auth digest work when the daemon is configured for them")
    func hashesAndAuth() async throws {
        for (hash, auth) in [("sha512", "sha512"), ("sha256", "sha1"), ("none", "none")] {
            let minimum = hash == "none" ? "none" : "sha1"
            let router = try await RouterLab(listeners: "multicast { key_file = \"KEY\"; interface = \"br0\"; hash = \"\(minimum)\"; auth = \"\(auth)\"; }")
            let result = try await router.client(1, "-o", "status", "-H", "vm1", "-c", hash, "-C", auth, "-t", "5")
            #expect(result.status == 0, "hash \(hash) auth \(auth): \(result)")
        }
    }

    @Test("groups: a requester may act only on its group's domains (3 otherwise) and lists only those")
    func accessGroups() async throws {
        let router = try await RouterLab(guests: 2, extra: """
            groups {
                group { name = "cluster1"; ip = "\(NamespaceLab.guestAddress(1))"; uuid = "vm1"; uuid = "11111111-2222-3333-4444-555555555555"; }
            }
            """)
        #expect(try await router.status("vm1") == 0)
        // As in the reference, the target string as sent must be listed: vm-off's UUID is, its name is not.
        #expect(try await router.status("11111111-2222-3333-4444-555555555555") == 2)
        #expect(try await router.status("vm-off") == 3)
        #expect(try await router.client(1, "-o", "off", "-H", "vm-paused", "-t", "5").status == 3)
        #expect(try await router.status("vm1", guest: 2) == 3)
        #expect(try await router.list().map { $0[0] } == ["vm-off", "vm1"])
        #expect(try await router.list(guest: 2).isEmpty)
    }

    @Test("interface really restricts: requests arriving on another interface are not served")
    func interfaceFilter() async throws {
        try TestEnvironment.require([.command("python3", package: "python3")])
        let router = try await RouterLab(outsider: true)
        let outsider = "\(NamespaceLab.prefix)\(router.lab.id)-x"
        // Multicast from outside the bridge: the group is joined on br0 only, so it never arrives.
        let multicast = try await router.lab.run(in: outsider, ["fence_xvm", "-k", router.keyPath, "-o", "off", "-H", "vm1", "-t", "2", "-r", "10"])
        #expect(multicast.status == 1, "\(multicast)")
        // A correctly signed unicast datagram to the port does reach the socket (the reference serves
        // it); ours drops it because it came in on ext0, not br0.
        var request = try FenceRequest(operation: .off, hash: .sha256, domain: "vm1", callback: CallbackAddress("203.0.113.2"), port: 1229, seqno: 4242)
        request.sign(key: FenceKey(fileContents: RouterLab.testKey), random: [1, 2, 3, 4, 5, 6])
        let hex = request.bytes.map { String(format: "%02x", $0) }.joined()
        let send = "import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(bytes.fromhex(sys.argv[1]), ('203.0.113.1', 1229))"
        try await Command.check(["ip", "netns", "exec", outsider, "python3", "-c", send, hex])
        try await router.daemon.waitForLog("reason=wrong-interface", timeout: .seconds(5))
        #expect(try await router.status("vm1") == 0, "nothing was done, and the bridge side still works")
    }

    @Test("IPv6 multicast and tcp listeners serve beside IPv4 in one daemon")
    func severalListeners() async throws {
        let router = try await RouterLab(listener: "multicast,tcp", listeners: """
            multicast { key_file = "KEY"; interface = "br0"; }
            multicast { key_file = "KEY"; interface = "br0"; family = "ipv6"; }
            tcp { key_file = "KEY"; address = "\(NamespaceLab.hostAddress)"; }
            """)
        try await router.daemon.waitForLog("tcp \(NamespaceLab.hostAddress) port 1229")
        try await router.daemon.waitForLog("multicast ff05::3:1 port 1229 on br0")
        #expect(try await router.client(1, "-a", "ff05::3:1", "-o", "status", "-H", "vm1", "-t", "5").status == 0)
        #expect(try await router.client(1, "-a", "ff05::3:1", "-o", "off", "-H", "vm1", "-t", "5").status == 0)
        #expect(try await router.status("vm1") == 2)
        let tcp = try await router.client(1, ["-T", NamespaceLab.hostAddress, "-o", "status", "-H", "vm-off", "-t", "5"], program: "fence_virt")
        #expect(tcp.status == 2, "\(tcp)")
        #expect(try await router.client(1, ["-T", NamespaceLab.hostAddress, "-o", "on", "-H", "vm1", "-t", "5"], program: "fence_virt").status == 0)
        #expect(try await router.status("vm1") == 0)
    }

    @Test("20 guests fence 20 different VMs at once: every one succeeds")
    func twentyConcurrentGuests() async throws {
        let domains = HostXML.generated(host: 1, prefix: "vm", count: 20)
        let router = try await RouterLab(guests: 20, domains: domains)
        let results = try await withThrowingTaskGroup(of: (Int, ProcessResult).self) { group in
            for index in 1...20 {
                group.addTask { (index, try await router.client(index, "-o", "off", "-H", "vm\(index)", "-t", "10")) }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        for index in 1...20 {
            #expect(results[index]?.status == 0, "guest \(index): \(String(describing: results[index]))")
        }
        let rows = try await router.list()
        #expect(rows.count == 20)
        #expect(rows.allSatisfy { $0.last == "off" })
    }

    @Test("300 requests in a row from one guest: every one is answered (a busy guest is not a flood)")
    func busyGuest() async throws {
        let router = try await RouterLab()
        let loop = "for i in $(seq 300); do fence_xvm -k \(router.keyPath) -o status -H vm1 -t 5 >/dev/null || echo \"run $i: $?\"; done"
        let result = try await router.lab.run(in: router.lab.guests[0], ["bash", "-c", loop])
        #expect(result.output.isEmpty, "runs that failed: \(result.output)")
        #expect(!router.daemon.log.contains("source-quota"))
    }

    @Test("a guest's next request that draws the seqno of the one just answered is answered too (fence_xvm's seqno is the clock's microseconds)")
    func repeatedSeqno() async throws {
        try TestEnvironment.require([.command("cc", package: "gcc")])
        let router = try await RouterLab()
        let shim = router.directory.path("fixed-seqno.so")
        let built = try await Command.run(["cc", "-shared", "-fPIC", "-O2", "-o", shim, Fixtures.url("fixed-seqno.c").path])
        try #require(built.status == 0, "\(built)")
        // Two runs in a row with one seqno: the second's first packet comes moments after the
        // first was answered and is taken for a late copy of it; its retransmission 2 s later,
        // past the duplicate window, is a new request.
        for run in 1...2 {
            let result = try await router.lab.run(
                in: router.lab.guests[0], ["env", "LD_PRELOAD=\(shim)", "fence_xvm", "-k", router.keyPath, "-o", "status", "-H", "vm1", "-t", "6"]
            )
            #expect(result.status == 0, "run \(run): \(result)")
        }
        let answered = router.daemon.log.split(separator: "\n").filter { $0.contains("request answered") && $0.contains("seqno=424242") }
        #expect(answered.count == 2, "both runs drew seqno 424242 and were answered: \(answered)")
    }

    @Test("SIGTERM stops the daemon gracefully")
    func gracefulStop() async throws {
        let router = try await RouterLab()
        #expect(try await router.status("vm1") == 0)
        let status = await router.daemon.stop(signal: SIGTERM, timeout: .seconds(10))
        #expect(status == 0)
        #expect(router.daemon.log.contains("[DaemonSupport] stopped"), "the service group finished its graceful shutdown")
    }
}
