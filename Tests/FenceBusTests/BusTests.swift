import BusClient
import Cryptography
import FenceCore
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

    @Test("refuses what is not JSON", arguments: ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"\u{01}\"", "tru", "{} x", "\"\\ud800\""])
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
    static let key = try! BusKey(fileContents: Array("bus-key-for-tests-0123456789abcdef".utf8))
    let codec = BusCodec(key: BusMessageTests.key)
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
        .result(CommandResult(commandID: "c-1", host: "h1", outcome: .success, observed: vm1)),
        .result(CommandResult(commandID: "c-2", host: "h1", outcome: .failed(code: "hypervisor-unavailable", message: "libvirt: connection refused"), observed: nil)),
        .result(CommandResult(commandID: "c-3", host: "h1", outcome: .off, observed: nil)),
        .result(CommandResult(commandID: "c-4", host: "h1", outcome: .denied, observed: nil)),
        .result(CommandResult(commandID: "c-5", host: "h1", outcome: .success, before: vm1, observed: nil)),
        .snapshotRequest(SnapshotRequest(router: "router-a")),
        .hostState(HostStateChange(host: "h3", change: .confirmDown, operatorName: "alice")),
        .hostState(HostStateChange(host: "h4", change: .forget, operatorName: "bob")),
    ]

    @Test("every message seals and opens to itself", arguments: all)
    func roundTrip(message: BusMessage) throws {
        let signed = codec.seal(message, id: "m-1", sender: "h1", now: 1_795_000_000_123)
        let envelope = try codec.open(body: signed.body, mac: signed.mac)
        #expect(envelope.message == message)
        #expect(envelope.id == "m-1")
        #expect(envelope.sender == "h1")
        #expect(envelope.sentAt == 1_795_000_000_123)
    }

    @Test("a flipped byte, a wrong key or a missing MAC is refused as bad-mac")
    func badMAC() throws {
        let signed = codec.seal(Self.all[5], id: "m-1", sender: "router-a", now: 1)
        for index in stride(from: 0, to: signed.body.count, by: 7) {
            var body = signed.body
            body[index] ^= 0x01
            #expect(throws: BusError(.badMAC, "the MAC does not match the bus key")) { try codec.open(body: body, mac: signed.mac) }
        }
        let other = BusCodec(key: try BusKey(fileContents: Array("another-bus-key-0123456789abcdefgh".utf8)))
        #expect(throws: BusError.self) { try other.open(body: signed.body, mac: signed.mac) }
        #expect(throws: BusError(.badMAC, "no MAC")) { try codec.open(body: signed.body, mac: nil) }
        #expect(throws: BusError.self) { try codec.open(body: signed.body, mac: "zz") }
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
            let signed = codec.seal(Self.all[4], id: id, sender: "h1", now: time)
            return try codec.open(body: signed.body, mac: signed.mac)
        }
        try guardian.admit(envelope("a", at: now), now: now)
        #expect(throws: BusError.self) { try guardian.admit(envelope("a", at: now), now: now + 10) }
        try guardian.admit(envelope("b", at: now - 29_000), now: now)
        #expect(throws: BusError.self) { try guardian.admit(envelope("c", at: now - 31_000), now: now) }
        #expect(throws: BusError.self) { try guardian.admit(envelope("d", at: now + 31_000), now: now) }
        // Old ids are forgotten once they could only be refused as stale.
        try guardian.admit(envelope("e", at: now + 60_000), now: now + 60_000)
        #expect(guardian.remembered == 1)
    }

    @Test("unknown versions, types and incomplete bodies are refused even with a good MAC")
    func refusedForms() throws {
        let key = Self.key
        func sealedRaw(_ text: String) -> SignedBusMessage {
            let body = Array(text.utf8)
            return SignedBusMessage(body: body, mac: BusCodec.hex(Digest.hmac(.sha256, key: key.bytes, message: body)))
        }
        let cases: [(String, BusError.Code)] = [
            ("{\"v\":2,\"type\":\"heartbeat\",\"id\":\"x\",\"ts\":1,\"from\":\"h\",\"body\":{}}", .unsupportedVersion),
            ("{\"v\":1,\"type\":\"gossip\",\"id\":\"x\",\"ts\":1,\"from\":\"h\",\"body\":{}}", .unknownType),
            ("{\"v\":1,\"type\":\"heartbeat\",\"id\":\"x\",\"ts\":1,\"from\":\"h\",\"body\":{\"host\":\"h\"}}", .malformed),
            ("{\"v\":1,\"type\":\"command\",\"id\":\"x\",\"ts\":1,\"from\":\"r\",\"body\":{\"id\":\"c\",\"host\":\"h\",\"action\":\"explode\",\"target\":\"vm\",\"deadline\":1,\"issuer\":\"r\"}}", .malformed),
            ("not json", .malformed),
        ]
        for (text, code) in cases {
            let signed = sealedRaw(text)
            do {
                _ = try codec.open(body: signed.body, mac: signed.mac)
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
}
