import Foundation
import JSONValue
import Logging
import BusClient
import Cryptography
import FenceCore
import Synchronization
import Testing
@testable import FenceBus

@Suite("Bus JSON")
struct JSONTests {
    @Test("round trips, exact 64-bit integers, escapes and key order")
    func roundTrip() throws {
        let value = JSON.object([
            ("z", .integer(UInt64.max)), ("a", .integer(Int64.min)), ("text", .string("quote \" slash \\ line\n tab\t \u{01} é 🔒")),
            ("list", .array([.bool(true), .bool(false), .null, .number("1.5e-3")])), ("empty", .object([])),
        ])
        let bytes = value.encoded()
        #expect(try JSON(parsing: bytes) == value)
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("{\"z\":18446744073709551615,\"a\":-9223372036854775808,"))
        #expect(try JSON(parsing: Array("\"\\ud83d\\udd12 \\u00e9\"".utf8)) == .string("🔒 é"))
    }

    @Test("refuses what is not JSON", arguments: ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"\u{01}\"", "tru", "{} x", "\"\\ud800\"", "{\"a\":1", "[1 2]", "nul", "fals", "\"abc", "{a:1}", "\"\\u12\""])
    func refusals(text: String) {
        #expect(throws: JSON.ParseError.self) { try JSON(parsing: Array(text.utf8)) }
    }

    @Test("nesting is bounded")
    func depth() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSON.ParseError.self) { try JSON(parsing: Array(deep.utf8)) }
    }
}

@Suite("Bus messages")
struct BusMessageTests {
    static let keyBytes = Array("bus-key-for-tests-0123456789abcdef".utf8)
    static let key = try! BusKey(fileContents: keyBytes)
    static let keys = ["h1": SigningKey(), "router-a": SigningKey(), "router-b": SigningKey(), "alice": SigningKey(), "bob": SigningKey()]
    static let trust = FixedTrust([
        .host: ["h1": keys["h1"]!.verifyingKey],
        .router: ["router-a": keys["router-a"]!.verifyingKey, "router-b": keys["router-b"]!.verifyingKey],
        .operator: ["alice": keys["alice"]!.verifyingKey, "bob": keys["bob"]!.verifyingKey],
    ])
    let codec = BusCodec(key: BusMessageTests.key, trust: BusMessageTests.trust)

    static func identity(_ role: BusRole, _ name: String, key: SigningKey? = nil) -> BusIdentity {
        BusIdentity(role: role, name: name, key: key ?? keys[name]!)
    }

    /// The identity a message must come from.
    static func sender(of message: BusMessage) -> BusIdentity {
        identity(message.signerRole, message.speaksFor)
    }

    /// Who receives it here: router-a what hosts and operators send, h1 what routers send.
    static func receiver(of message: BusMessage) -> BusIdentity {
        message.receiverRole == .router ? identity(.router, "router-a") : identity(.host, "h1")
    }

    func seal(_ message: BusMessage, id: String = "m-1", now: UInt64 = 1, as sender: BusIdentity? = nil, for receivers: [String]? = nil) throws -> SealedBusMessage {
        try codec.seal(message, id: id, as: sender ?? Self.sender(of: message), for: receivers ?? [Self.receiver(of: message).name], now: now)
    }

    func open(_ sealed: SealedBusMessage, _ message: BusMessage, as receiver: BusIdentity? = nil, properties: [String: String]? = nil) throws(BusError) -> BusEnvelope {
        try codec.open(body: sealed.body, properties: properties ?? sealed.properties, as: receiver ?? Self.receiver(of: message))
    }

    /// Why opening was refused; nil if it was not.
    func refusal(_ sealed: SealedBusMessage, _ message: BusMessage, as receiver: BusIdentity? = nil, properties: [String: String]? = nil) -> BusError.Code? {
        do {
            _ = try open(sealed, message, as: receiver, properties: properties)
            return nil
        } catch {
            return error.code
        }
    }

    static let vm1 = DomainInfo(name: "vm1", uuid: "6695eb01-f6a4-8304-79aa-97f2502e193f", state: .running, persistent: true)
    static let vm2 = DomainInfo(name: "vm \"two\"", uuid: "11111111-2222-3333-4444-555555555555", state: .shutOff, persistent: false)

    static let all: [BusMessage] = [
        .snapshot(InventorySnapshot(host: "h1", epoch: 1_795_000_000_000, sequence: 1, libvirtConnected: true, domains: [vm1, vm2])),
        .snapshot(InventorySnapshot(host: "h1", epoch: 1, sequence: 2, libvirtConnected: false, domains: [])),
        .delta(InventoryDelta(host: "h1", epoch: 1, sequence: 3, change: .updated(vm1), event: "started", eventTime: 1_790_000_000_000)),
        .delta(InventoryDelta(host: "h1", epoch: 1, sequence: 4, change: .removed(uuid: vm2.uuid, name: vm2.name), event: "undefined", eventTime: 1_790_000_000_001)),
        .delta(InventoryDelta(host: "h1", epoch: 1, sequence: 5, change: .unreadable(uuid: vm2.uuid, name: vm2.name), event: "stopped", eventTime: 1_790_000_000_002)),
        .heartbeat(Heartbeat(host: "h1", epoch: 1, sequence: 5, libvirtConnected: true, domainCount: 2)),
        .command(FenceCommand(id: "c-1", host: "h1", action: .reboot, target: "vm1", deadline: 1_795_000_020_000, issuer: "router-a")),
        .command(FenceCommand(id: "c-6", host: "h1", action: .off, target: "vm1", uuid: vm1.uuid, deadline: 1_795_000_020_000, issuer: "router-a")),
        .command(FenceCommand(id: "c-6", host: "h1", action: .off, target: "vm1", uuid: vm1.uuid, deadline: 1_795_000_020_000, issuer: "router-a", agentEpoch: 1_794_000_000_000)),
        .result(CommandResult(commandID: "c-1", host: "h1", outcome: .success, observed: vm1)),
        .result(CommandResult(commandID: "c-2", host: "h1", outcome: .failed(code: "hypervisor-unavailable", message: "libvirt: connection refused"), observed: nil)),
        .result(CommandResult(commandID: "c-3", host: "h1", outcome: .off, observed: nil)),
        .result(CommandResult(commandID: "c-4", host: "h1", outcome: .denied, observed: nil)),
        .result(CommandResult(commandID: "c-5", host: "h1", outcome: .success, before: vm1, observed: nil)),
        // A command's readings do not say whether the domain is persistent.
        .result(CommandResult(commandID: "c-7", host: "h1", outcome: .success, before: DomainInfo(name: "vm1", uuid: vm1.uuid, state: .running, persistent: nil), observed: DomainInfo(name: "vm1", uuid: vm1.uuid, state: .shutOff, persistent: nil))),
        .snapshotRequest(SnapshotRequest(router: "router-a")),
        .hostState(HostStateChange(host: "h3", change: .confirmDown, operatorName: "alice")),
        .hostState(HostStateChange(host: "h4", change: .forget, operatorName: "bob")),
    ]

    @Test("every message seals and opens to itself", arguments: all)
    func roundTrip(message: BusMessage) throws {
        let sealed = try seal(message, now: 1_795_000_000_123)
        let envelope = try open(sealed, message)
        #expect(envelope.message == message)
        #expect(envelope.id == "m-1")
        #expect(envelope.sender == message.speaksFor)
        #expect(envelope.sentAt == 1_795_000_000_123)
        // Operators sign (every router checks alone); daemons MAC for each receiver.
        switch sealed.proof {
        case .signature: #expect(message.signerRole == .operator)
        case .pairMACs(let macs): #expect(Array(macs.keys) == [Self.receiver(of: message).name])
        }
    }

    @Test("a flipped byte, a wrong key or a missing MAC is refused as bad-mac")
    func badMAC() throws {
        let message = Self.all[5]
        let sealed = try seal(message)
        for index in stride(from: 0, to: sealed.body.count, by: 7) {
            var body = sealed.body
            body[index] ^= 0x01
            #expect(throws: BusError(.badMAC, "the MAC does not match the bus key")) {
                try codec.open(body: body, properties: sealed.properties, as: Self.receiver(of: message))
            }
        }
        let other = BusCodec(key: try BusKey(fileContents: Array("another-bus-key-0123456789abcdefgh".utf8)), trust: Self.trust)
        #expect(throws: BusError.self) { try other.open(body: sealed.body, properties: sealed.properties, as: Self.receiver(of: message)) }
        var properties = sealed.properties
        properties[SealedBusMessage.macProperty] = nil
        #expect(throws: BusError(.badMAC, "no MAC")) { try open(sealed, message, properties: properties) }
        properties[SealedBusMessage.macProperty] = "zz"
        #expect(refusal(sealed, message, properties: properties) == .badMAC)
    }

    @Test("each message needs the proof of a trusted key of its role, under the name it speaks for", arguments: all)
    func proofs(message: BusMessage) throws {
        let name = message.speaksFor
        let role = message.signerRole
        let genuine = try seal(message)
        #expect(refusal(genuine, message) == nil)
        // Every other holder of the bus key: its own key under the sender's name, or its own name.
        for (other, key) in Self.keys where other != name {
            #expect(refusal(try seal(message, as: Self.identity(role, name, key: key)), message) == .badSignature, "\(other)'s key as \(name)")
            #expect(refusal(try seal(message, as: Self.identity(role, other, key: key)), message) != nil, "\(other) in its own name")
        }
        // A broker account with the bus key but no identity key.
        #expect(refusal(try seal(message, as: Self.identity(role, name, key: SigningKey())), message) == .badSignature)
        #expect(refusal(try seal(message, as: Self.identity(role, "mallory", key: SigningKey())), message) == .unknownSender)
        // No proof, or one with a flipped bit.
        var properties = genuine.properties
        properties[SealedBusMessage.signatureProperty] = nil
        properties[SealedBusMessage.pairMACsProperty] = nil
        #expect(refusal(genuine, message, properties: properties) == (role == .operator ? .badSignature : .notAddressed))
        let flipped: SenderProof = switch genuine.proof {
        case .signature(var signature): { signature[3] ^= 1; return .signature(signature) }()
        case .pairMACs(var macs): { macs[macs.keys.first!]![3] ^= 1; return .pairMACs(macs) }()
        }
        #expect(refusal(SealedBusMessage(body: genuine.body, mac: genuine.mac, proof: flipped), message) == .badSignature)
    }

    @Test("a pair MAC proves the sender to its receiver only: not to another router, not relabelled, not reflected")
    func pairMACs() throws {
        let heartbeat = BusMessage.heartbeat(Heartbeat(host: "h1", epoch: 1, sequence: 1, libvirtConnected: true, domainCount: 0))
        let routerA = Self.identity(.router, "router-a"), routerB = Self.identity(.router, "router-b")
        // Sealed for both routers, both open it.
        let both = try seal(heartbeat, for: ["router-a", "router-b"])
        #expect(refusal(both, heartbeat, as: routerA) == nil)
        #expect(refusal(both, heartbeat, as: routerB) == nil)
        // Sealed for router-a: router-b is not addressed, and router-a's MAC relabelled for router-b does not pass.
        let forA = try seal(heartbeat, for: ["router-a"])
        #expect(refusal(forA, heartbeat, as: routerB) == .notAddressed)
        guard case .pairMACs(let macs) = forA.proof else { throw BusError(.malformed, "not MAC'd") }
        let relabelled = SealedBusMessage(body: forA.body, mac: forA.mac, proof: .pairMACs(["router-b": macs["router-a"]!]))
        #expect(refusal(relabelled, heartbeat, as: routerB) == .badSignature)
        // A receiver in the wrong role is not addressed.
        #expect(refusal(forA, heartbeat, as: Self.identity(.host, "h1")) == .notAddressed)
        // A command router-a sealed for h1 cannot be passed off as h1's to router-a (the receiver is in the MAC).
        let command = BusMessage.command(FenceCommand(id: "c", host: "h1", action: .off, target: "vm1", deadline: 2, issuer: "router-a"))
        let toHost = try seal(command)
        guard case .pairMACs(let commandMACs) = toHost.proof else { throw BusError(.malformed, "not MAC'd") }
        let reflected = SealedBusMessage(body: toHost.body, mac: toHost.mac, proof: .pairMACs(["router-a": commandMACs["h1"]!]))
        #expect(refusal(reflected, command, as: routerA) == .notAddressed)
        // Sealing for a receiver that is not trusted is refused at the sender.
        #expect(throws: BusError.self) { try seal(heartbeat, for: ["router-z"]) }
        #expect(throws: BusError.self) { try seal(heartbeat, for: Array(repeating: "router-a", count: SealedBusMessage.maximumReceivers + 1)) }
    }

    @Test("a rotated key derives a new pair key: the old key's MACs stop passing")
    func rotation() throws {
        let heartbeat = BusMessage.heartbeat(Heartbeat(host: "h1", epoch: 1, sequence: 1, libvirtConnected: true, domainCount: 0))
        let oldKey = SigningKey(), newKey = SigningKey()
        let trust = RotatingTrust(host: oldKey.verifyingKey, router: Self.keys["router-a"]!.verifyingKey)
        let receiving = BusCodec(key: Self.key, trust: trust)
        let sending = BusCodec(key: Self.key, trust: Self.trust)
        let routerA = Self.identity(.router, "router-a")
        let old = try sending.seal(heartbeat, id: "1", as: Self.identity(.host, "h1", key: oldKey), for: ["router-a"], now: 1)
        #expect(throws: Never.self) { try receiving.open(body: old.body, properties: old.properties, as: routerA) }
        trust.host.withLock { $0 = newKey.verifyingKey }
        #expect(throws: BusError.self) { try receiving.open(body: old.body, properties: old.properties, as: routerA) }
        let new = try sending.seal(heartbeat, id: "2", as: Self.identity(.host, "h1", key: newKey), for: ["router-a"], now: 1)
        #expect(throws: Never.self) { try receiving.open(body: new.body, properties: new.properties, as: routerA) }
    }

    final class RotatingTrust: BusTrust {
        let host: Mutex<VerifyingKey>
        let router: VerifyingKey

        init(host: VerifyingKey, router: VerifyingKey) {
            self.host = Mutex(host)
            self.router = router
        }

        func verifyingKey(role: BusRole, name: String) -> VerifyingKey? {
            switch (role, name) {
            case (.host, "h1"): host.withLock { $0 }
            case (.router, "router-a"): router
            default: nil
            }
        }

        func names(role: BusRole) -> [String] { role == .router ? ["router-a"] : [] }
    }

    @Test("a trusted key of another role does not prove: a host cannot command, nor a router state a host down")
    func roles() throws {
        let command = BusMessage.command(FenceCommand(id: "c", host: "h1", action: .off, target: "vm1", deadline: 2, issuer: "h1"))
        let statement = BusMessage.hostState(HostStateChange(host: "h2", change: .confirmDown, operatorName: "router-a"))
        let result = BusMessage.result(CommandResult(commandID: "c", host: "alice", outcome: .off, observed: nil))
        for (message, name) in [(command, "h1"), (statement, "router-a"), (result, "alice")] {
            let sealed = try seal(message, as: Self.identity(message.signerRole, name))
            #expect(refusal(sealed, message) == .unknownSender)
        }
        // Inventory in another host's name, proven by its own trusted key: wrong-sender.
        let trust = FixedTrust([.host: ["h1": Self.keys["h1"]!.verifyingKey, "h2": Self.keys["bob"]!.verifyingKey],
                                .router: ["router-a": Self.keys["router-a"]!.verifyingKey]])
        let both = BusCodec(key: Self.key, trust: trust)
        let heartbeat = BusMessage.heartbeat(Heartbeat(host: "h2", epoch: 1, sequence: 1, libvirtConnected: true, domainCount: 0))
        let forged = try both.seal(heartbeat, id: "m", as: Self.identity(.host, "h1"), for: ["router-a"], now: 1)
        #expect(throws: BusError(.wrongSender, "a heartbeat for h2 sent by h1")) {
            try both.open(body: forged.body, properties: forged.properties, as: Self.identity(.router, "router-a"))
        }
    }

    @Test("keys round trip through PEM; other PEM and garbage are refused")
    func keyFiles() throws {
        let key = SigningKey()
        let again = try SigningKey(pem: key.pem)
        #expect(again.verifyingKey == key.verifyingKey)
        #expect(try VerifyingKey(pem: key.verifyingKey.pem) == key.verifyingKey)
        #expect(String(decoding: key.pem, as: UTF8.self).hasPrefix("-----BEGIN PRIVATE KEY-----"))
        #expect(String(decoding: key.verifyingKey.pem, as: UTF8.self).hasPrefix("-----BEGIN PUBLIC KEY-----"))
        #expect(throws: SignatureKeyError.self) { try SigningKey(pem: key.verifyingKey.pem) }
        #expect(throws: SignatureKeyError.self) { try VerifyingKey(pem: Array("not a key".utf8)) }
        #expect(throws: SignatureKeyError.self) { try SigningKey(pem: []) }
        let signature = key.sign(Array("message".utf8))
        #expect(key.verifyingKey.verify(signature, of: Array("message".utf8)))
        #expect(!key.verifyingKey.verify(signature, of: Array("messagf".utf8)))
        #expect(!SigningKey().verifyingKey.verify(signature, of: Array("message".utf8)))
        #expect(!key.verifyingKey.verify(Array(signature.prefix(63)), of: Array("message".utf8)))
    }

    @Test("a short bus key is refused")
    func shortKey() {
        #expect(throws: BusError.self) { try BusKey(fileContents: Array("short".utf8)) }
    }

    @Test("stale and replayed messages are refused; fresh ones pass once")
    func replayGuard() throws {
        var guardian = ReplayGuard(tolerance: 30_000)
        let now: UInt64 = 1_795_000_000_000
        func envelope(_ id: String, at time: UInt64) throws -> BusEnvelope {
            try open(try seal(Self.all[4], id: id, now: time), Self.all[4])
        }
        try guardian.admit(envelope("a", at: now), now: now)
        #expect(throws: BusError.self) { try guardian.admit(envelope("a", at: now), now: now + 10) }
        try guardian.admit(envelope("b", at: now - 29_000), now: now)
        #expect(throws: BusError.self) { try guardian.admit(envelope("c", at: now - 31_000), now: now) }
        #expect(throws: BusError.self) { try guardian.admit(envelope("d", at: now + 31_000), now: now) }
        // Old ids are forgotten once they could only be refused as stale.
        try guardian.admit(envelope("e", at: now + 60_000), now: now + 60_000)
        #expect(guardian.remembered == 1)

        // A steady stream (a message every 5 ms for 150 s): ids are kept while they could come
        // again, then forgotten; memory holds one window of them.
        var stream = ReplayGuard(tolerance: 30_000)
        let sample = try envelope("sample", at: now)
        var most = 0
        for index in 0..<30_000 {
            let at = now + UInt64(index) * 5
            try stream.admit(BusEnvelope(id: "m\(index)", sentAt: at, sender: sample.sender, message: sample.message), now: at)
            most = max(most, stream.remembered)
        }
        #expect(most <= 6_002)

        // An id sent again with a later date is refused, and remembered until that later date
        // is stale too.
        var renewed = ReplayGuard(tolerance: 30_000)
        try renewed.admit(envelope("r", at: now), now: now)
        #expect(throws: BusError.self) { try renewed.admit(envelope("r", at: now + 20_000), now: now + 20_000) }
        #expect(throws: BusError.self, "still remembered after the first date is stale") {
            try renewed.admit(envelope("r", at: now + 20_000), now: now + 40_000)
        }
        let last = now + 29_999 * 5
        #expect(throws: BusError.self, "an id of the window, sent again") {
            try stream.admit(BusEnvelope(id: "m24000", sentAt: last, sender: sample.sender, message: sample.message), now: last)
        }
    }

    @Test("unknown versions, types and incomplete bodies are refused even with a good MAC")
    func refusedForms() throws {
        func sealedRaw(_ text: String) -> SealedBusMessage {
            let body = Array(text.utf8)
            return SealedBusMessage(body: body, mac: BusCodec.hex(Digest.hmac(.sha256, key: Self.keyBytes, message: body)),
                                    proof: .signature(Self.keys["h1"]!.sign(body)))
        }
        let cases: [(String, BusError.Code)] = [
            ("{\"v\":2,\"type\":\"heartbeat\",\"id\":\"x\",\"ts\":1,\"from\":\"h\",\"body\":{}}", .unsupportedVersion),
            ("{\"v\":1,\"type\":\"gossip\",\"id\":\"x\",\"ts\":1,\"from\":\"h\",\"body\":{}}", .unknownType),
            ("{\"v\":1,\"type\":\"heartbeat\",\"id\":\"x\",\"ts\":1,\"from\":\"h\",\"body\":{\"host\":\"h\"}}", .malformed),
            ("{\"v\":1,\"type\":\"command\",\"id\":\"x\",\"ts\":1,\"from\":\"r\",\"body\":{\"id\":\"c\",\"host\":\"h\",\"action\":\"explode\",\"target\":\"vm\",\"deadline\":1,\"issuer\":\"r\"}}", .malformed),
            ("not json", .malformed),
            ("{\"v\":1,\"type\":\"result\",\"id\":\"x\",\"ts\":1,\"from\":\"h\",\"body\":{\"command\":\"c\",\"host\":\"h\",\"outcome\":\"success\",\"before\":null,\"observed\":{\"name\":\"vm1\",\"uuid\":\"u\",\"state\":1,\"persistent\":\"yes\"}}}", .malformed),
        ]
        for (text, code) in cases {
            let sealed = sealedRaw(text)
            do {
                _ = try codec.open(body: sealed.body, properties: sealed.properties, as: Self.identity(.router, "router-a"))
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.code == code, "\(text): \(error)")
            }
        }
    }
}


@Suite("Bus input that cannot trap")
struct BusBoundsTests {
    @Test("time differences of any two timestamps saturate instead of trapping")
    func differences() {
        #expect(WallClock.difference(from: 1000, to: 1500) == 500)
        #expect(WallClock.difference(from: 1500, to: 1000) == -500)
        #expect(WallClock.difference(from: 0, to: UInt64.max) == Int64.max)
        #expect(WallClock.difference(from: UInt64.max, to: 0) == -Int64.max)
        #expect(WallClock.difference(from: 1 << 63, to: 5) < 0)
        _ = WallClock.instant(for: UInt64.max, now: 0)
        _ = WallClock.instant(for: 0, now: UInt64.max)
    }

    @Test("an agent refuses commands past their deadline and with deadlines no router sets")
    func commandDeadlines() {
        func command(deadline: UInt64) -> FenceCommand {
            FenceCommand(id: "c", host: "h1", action: .off, target: "vm1", deadline: deadline, issuer: "r1")
        }
        let now: UInt64 = 1_800_000_000_000
        #expect(command(deadline: now + 20_000).refusal(now: now) == nil)
        #expect(command(deadline: now + FenceCommand.longestLifetime).refusal(now: now) == nil)
        guard case .failed(let late, _)? = command(deadline: now).refusal(now: now),
              case .failed(let far, _)? = command(deadline: now + FenceCommand.longestLifetime + 1).refusal(now: now),
              case .failed(let huge, _)? = command(deadline: UInt64.max).refusal(now: now) else {
            Issue.record("a command was not refused")
            return
        }
        #expect(late == "expired")
        #expect(far == "bad-deadline" && huge == "bad-deadline")
    }

    @Test("a result's outcome shows as the router's outcomes do: a label for counters, a failure by its code")
    func outcomeText() {
        let failed = CommandResult.Outcome.failed(code: "expired", message: "the command arrived 5 ms after its deadline")
        #expect(failed.label == "failed" && "\(failed)" == "failed(expired)")
        #expect(FenceOutcome.failed(FenceFailure(.deadlineExceeded, "late")).description == "failed(deadline-exceeded)")
        for (outcome, text) in [(CommandResult.Outcome.success, "success"), (.off, "off"), (.denied, "denied")] {
            #expect(outcome.label == text && "\(outcome)" == text)
        }
    }
}

@Suite("Trust directory")
struct TrustDirectoryTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/fr-trust.XXXXXX".utf8CString)
        directory = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!).map { String(cString: $0) } })
        for role in BusRole.allCases { mkdir("\(directory)/\(role.directory)", 0o755) }
    }

    func file(_ role: BusRole, _ name: String, _ contents: [UInt8], mode: mode_t = 0o644) {
        let path = "\(directory)/\(role.directory)/\(name).pub"
        unlink(path)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
        _ = contents.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        fchmod(descriptor, mode)
        close(descriptor)
    }

    @Test("keys by role and name; a new, rotated or removed file counts at the next look; writable, odd or unsafe names do not")
    func lookups() throws {
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        let trust = TrustDirectory(path: directory, recheck: .zero, logger: Logger(label: "trust-test"))
        let first = SigningKey(), second = SigningKey()
        #expect(trust.verifyingKey(role: .host, name: "hv1") == nil)
        file(.host, "hv1", first.verifyingKey.pem)
        #expect(trust.verifyingKey(role: .host, name: "hv1") == first.verifyingKey)
        #expect(trust.verifyingKey(role: .router, name: "hv1") == nil, "a host's key is not a router's")
        file(.host, "hv1", second.verifyingKey.pem)
        #expect(trust.verifyingKey(role: .host, name: "hv1") == second.verifyingKey, "rotated")
        unlink("\(directory)/hosts/hv1.pub")
        #expect(trust.verifyingKey(role: .host, name: "hv1") == nil, "removed")
        file(.operator, "alice", first.verifyingKey.pem, mode: 0o666)
        #expect(trust.verifyingKey(role: .operator, name: "alice") == nil, "writable by others")
        file(.router, "r1", Array("garbage".utf8))
        #expect(trust.verifyingKey(role: .router, name: "r1") == nil)
        file(.host, "hv2", first.verifyingKey.pem)
        for name in ["../hosts/hv2", "", ".hv2", "hv2/", String(repeating: "h", count: 65)] {
            #expect(trust.verifyingKey(role: .host, name: name) == nil, "\(name)")
        }
        #expect(trust.names(role: .host) == ["hv2"])
    }

    @Test("without a recheck due, a look costs no file access; a look-alike spelling of a cached name is refused")
    func cached() throws {
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        let trust = TrustDirectory(path: directory, recheck: .seconds(3600), logger: Logger(label: "trust-test"))
        let key = SigningKey()
        file(.host, "hv1", key.verifyingKey.pem)
        #expect(trust.verifyingKey(role: .host, name: "hv1") == key.verifyingKey)
        unlink("\(directory)/hosts/hv1.pub")
        #expect(trust.verifyingKey(role: .host, name: "hv1") == key.verifyingKey)
        file(.host, "hostK", key.verifyingKey.pem)
        #expect(trust.verifyingKey(role: .host, name: "hostK") == key.verifyingKey)
        // The Kelvin sign equals "K" as a Swift string: the cache must not answer for that spelling.
        #expect(trust.verifyingKey(role: .host, name: "host\u{212A}") == nil)
    }
}

@Suite("Bus names and receiver MACs")
struct BusNameTests {
    @Test("a name is ASCII letters, digits, '-', '_' and '.', 1 to 64 bytes, not starting with '.'")
    func names() {
        for name in ["hv1", "router-a", "a_b.c", "Z9", String(repeating: "x", count: 64)] {
            #expect(BusIdentity.isValidName(name), "\(name)")
        }
        for name in ["", ".hidden", "a/b", "a b", "é", "hv1\u{0}", "ａ", "a\nb", String(repeating: "x", count: 65)] {
            #expect(!BusIdentity.isValidName(name), "\(name)")
        }
    }

    @Test("the receiver's MAC is found among the others by its whole name")
    func receiverMAC() {
        let property = "hv1=0a0b,hv10=ffff,router-a=01FF"
        #expect(BusCodec.pairMAC(for: "hv1", in: property) == [0x0A, 0x0B])
        #expect(BusCodec.pairMAC(for: "hv10", in: property) == [0xFF, 0xFF])
        #expect(BusCodec.pairMAC(for: "router-a", in: property) == [0x01, 0xFF])
        #expect(BusCodec.pairMAC(for: "hv", in: property) == nil)
        #expect(BusCodec.pairMAC(for: "hv2", in: property) == nil)
        #expect(BusCodec.pairMAC(for: "hv1", in: nil) == nil)
        #expect(BusCodec.pairMAC(for: "hv1", in: "hv1=0g") == nil)
        #expect(BusCodec.pairMAC(for: "hv1", in: "hv1=abc") == nil)
        #expect(BusCodec.pairMAC(for: "hv1", in: ",,hv1=,") == [])
        #expect(BusCodec.pairMAC(for: "", in: "=00") == [0])
    }

    @Test("hex digits: exactly 0-9, a-f and A-F, over every byte value")
    func hexDigits() {
        let digits = Array("0123456789abcdef".utf8), upper = Array("ABCDEF".utf8)
        for byte in UInt8.min...UInt8.max {
            let expected: UInt8? = digits.firstIndex(of: byte).map(UInt8.init) ?? upper.firstIndex(of: byte).map { UInt8($0 + 10) }
            let text = String(decoding: [UInt8(ascii: "0"), byte], as: UTF8.self)
            #expect(BusCodec.bytes(hex: text) == expected.map { [$0] }, "byte \(byte)")
        }
    }
}
