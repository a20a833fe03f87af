import FenceConfig
import Testing

/// The configurator's questions and edits, answered from a list as a pipe would answer them.
@Suite("Configuration dialogue")
struct ConfigurationDialogueTests {
    struct Transcript {
        var prompts: [String] = []
        var remarks: [String] = []
        var document: ConfigDocument
    }

    /// Runs the dialogue; answers run out like a closed pipe (every later question keeps its default).
    func converse(_ answers: [String], editing start: ConfigDocument = ConfigDocument(file: "new.conf", items: [])) -> Transcript {
        var remaining = answers[...]
        var prompts: [String] = []
        var remarks: [String] = []
        var dialogue = ConfigurationDialogue(editing: start)
        dialogue.run(ask: { question in
            prompts.append("\(question.prompt) [\(question.defaultAnswer)]")
            return remaining.popFirst()
        }, tell: { remarks.append($0) })
        return Transcript(prompts: prompts, remarks: remarks, document: dialogue.document)
    }

    @Test("from scratch: fence_virtd -c's questions in its order; Enter keeps each default")
    func defaults() throws {
        let transcript = converse([])
        #expect(transcript.prompts == [
            "Module search path [/usr/lib/x86_64-linux-gnu/fence-virt/]", "Listener module [multicast]",
            "Multicast IP Address [225.0.0.12]", "Multicast IP Port [1229]", "Interface [none]",
            "Key File [/etc/cluster/fence_xvm.key]", "Backend module [libvirt]", "Libvirt URI [qemu:///system]",
        ])
        #expect(transcript.remarks == ["Using ipv4 as family."])
        let configuration = try RouterConfiguration(document: ConfigDocument(parsing: transcript.document.rendered(), file: "new.conf"))
        #expect(configuration.daemon.listeners == [.multicast])
        #expect(configuration.multicastListeners.first?.group.description == "225.0.0.12")
        #expect(configuration.multicastListeners.first?.interface == nil)
        #expect(configuration.libvirt.uris == ["qemu:///system"])
        #expect(configuration.warnings.isEmpty)
    }

    @Test("an existing file: its values are offered, what is not asked (hash, groups) stays as it was")
    func editsInPlace() throws {
        let start = try ConfigDocument(parsing: """
            fence_virtd { listener = "multicast"; backend = "libvirt"; request_timeout = "12"; }
            listeners { multicast { key_file = "/etc/fence_virt.key"; interface = "virbr0"; hash = "sha512"; } }
            backends { libvirt { uri = "qemu:///system"; } }
            groups { group { name = "web"; ip = "10.0.0.5"; uuid = "vm1"; } }
            """, file: "old.conf")
        let transcript = converse(["", "", "", "", "none", "", "", "qemu+ssh://hv/system"], editing: start)
        #expect(transcript.prompts.contains("Interface [virbr0]"))
        #expect(transcript.prompts.contains("Key File [/etc/fence_virt.key]"))
        let configuration = try RouterConfiguration(document: ConfigDocument(parsing: transcript.document.rendered(), file: "old.conf"))
        #expect(configuration.multicastListeners.first?.interface == nil, "'none' removes the interface")
        #expect(configuration.multicastListeners.first?.security.minimumHash == .sha512)
        #expect(configuration.multicastListeners.first?.security.keyFile == "/etc/fence_virt.key")
        #expect(configuration.daemon.requestTimeout == .seconds(12))
        #expect(configuration.groups.map(\.members) == [["vm1"]])
        #expect(configuration.libvirt.uris == ["qemu+ssh://hv/system"])
    }

    @Test("a wrong answer is explained and the question asked again; an IPv6 group sets the family")
    func reasks() throws {
        let transcript = converse(["", "multicst", "multicast,tcp", "10.0.0.1", "ff05::3:1", "0", "1229", "", "",
                                   "::1", "1230", "", "xen", "libvirt", ""])
        #expect(transcript.remarks.contains("\"multicst\" is not multicast, tcp or a list of them"))
        #expect(transcript.remarks.contains("\"10.0.0.1\" is not a multicast group address"))
        #expect(transcript.remarks.contains("Using ipv6 as family."))
        #expect(transcript.remarks.contains("\"0\" is not a port number (1…65535)"))
        #expect(transcript.remarks.contains("\"xen\" is not libvirt or amqp"))
        #expect(transcript.prompts.contains("TCP Listen IP Address [127.0.0.1]"))
        let configuration = try RouterConfiguration(document: ConfigDocument(parsing: transcript.document.rendered(), file: "new.conf"))
        #expect(configuration.daemon.listeners == [.multicast, .tcp])
        #expect(configuration.multicastListeners.first?.family == .ipv6)
        #expect(configuration.multicastListeners.first?.port == 1229)
        #expect(configuration.tcpListeners.first?.address.description == "::1")
        #expect(configuration.tcpListeners.first?.port == 1230)
    }

    @Test("the amqp backend: broker, TLS with a client certificate, bus key, identity, trust, expected hosts; one file for both daemons")
    func amqp() throws {
        let transcript = converse([
            "", "", "", "", "br0", "", "amqp",
            "amqps://broker.example.net:5671", "", "", "/etc/fence-router/ca.pem", "/etc/fence-router/hv1.pem", "", "", "",
            "/etc/fence-router/hv1.identity", "", "hv1, hv2", "",
        ])
        #expect(Array(transcript.prompts.suffix(12)) == [
            "Broker URL [amqp://127.0.0.1:5672]", "Broker user [none]", "Broker password file [none]",
            "TLS CA file [/etc/fence-router/ca.pem]", "TLS client certificate [none]", "TLS client key [/etc/fence-router/host.key]",
            "SASL mechanism [EXTERNAL]", "Bus key file [/etc/fence-router/bus.key]",
            "Identity key file [/etc/fence-router/identity.key]", "Trust directory [/etc/fence-router/trust]", "Expected hosts [none]",
            "Libvirt URI of this host's fence-hostd [qemu:///system]",
        ])
        let document = try ConfigDocument(parsing: transcript.document.rendered(), file: "new.conf")
        let router = try RouterConfiguration(document: document)
        #expect(router.daemon.backend == .amqp)
        #expect(router.bus?.urls == ["amqps://broker.example.net:5671"])
        #expect(router.bus?.saslMechanism == .external)
        #expect(router.bus?.tlsCertificateFile == "/etc/fence-router/hv1.pem")
        #expect(router.bus?.tlsKeyFile == "/etc/fence-router/host.key")
        #expect(router.bus?.user == nil)
        #expect(router.bus?.identityKeyFile == "/etc/fence-router/hv1.identity")
        #expect(router.bus?.trustDirectory == "/etc/fence-router/trust")
        #expect(router.routing.expectedHosts == ["hv1", "hv2"])
        let host = try HostAgentConfiguration(document: document)
        #expect(host.libvirt.uris == ["qemu:///system"])

        // Back to plain amqp on loopback, and no domains on this host: the TLS keys and the libvirt block go.
        let again = converse(["", "", "", "", "", "", "", "amqp://127.0.0.1:5672", "", "", "", "", "", "", "", "none"], editing: transcript.document)
        #expect(again.document.block(["backends", "libvirt"]) == nil)
        #expect(again.document.value(["backends", "amqp"], "tls_ca_file") == nil)
        #expect(again.prompts.contains("SASL mechanism [PLAIN]"), "EXTERNAL is no default without a certificate")
        #expect(try RouterConfiguration(document: ConfigDocument(parsing: again.document.rendered(), file: "new.conf")).bus?.saslMechanism == .plain)
    }
}
