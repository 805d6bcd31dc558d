//! Answers the gateway builds itself, and the encoding of every answer for the guest's
//! transport.

use hickory_proto::op::{Edns, Message, Metadata, ResponseCode};

use super::Transport;

/// The UDP payload size the gateway advertises in its own answers: the DNS Flag Day 2020
/// value, small enough to avoid IP fragmentation on any path.
const ADVERTISED_UDP_PAYLOAD: u16 = 1232;

/// The largest message a TCP answer can carry behind its 16-bit length prefix.
const MAX_TCP_MESSAGE: usize = u16::MAX as usize;

/// An answer to `query` with `code` and no records: same id and opcode, question echoed,
/// RD copied and RA set (the gateway is a recursive resolver to the guest).
pub(crate) fn answer_to(query: &Message, code: ResponseCode) -> Message {
    let mut answer = Message::error_msg(query.id, query.op_code, code);
    answer.metadata.recursion_desired = query.recursion_desired;
    answer.metadata.recursion_available = true;
    answer.metadata.checking_disabled = query.checking_disabled;
    answer.add_queries(query.queries.iter().cloned());
    // RFC 6891 6.1.1: a query with an OPT record gets an OPT record back.
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(ADVERTISED_UDP_PAYLOAD);
        answer.set_edns(edns);
    }
    answer
}

/// FORMERR for a query whose header could be read but whose body could not.
pub(crate) fn format_error(header: &Metadata) -> Message {
    let mut answer = Message::error_msg(header.id, header.op_code, ResponseCode::FormErr);
    answer.metadata.recursion_desired = header.recursion_desired;
    answer.metadata.recursion_available = true;
    answer
}

/// The largest answer the guest accepts over UDP for `query`: 512 bytes, or its EDNS size.
pub(crate) fn udp_limit(query: &Message) -> usize {
    usize::from(query.max_payload())
}

/// Encodes `answer` for the guest. An answer too large for the guest's transport becomes the
/// header and question with TC set, which tells a UDP client to ask again over TCP.
/// `None` only if the message cannot be encoded at all (then the guest gets nothing and
/// retries).
pub(crate) fn encode_for_guest(
    answer: &Message,
    transport: Transport,
    udp_limit: usize,
) -> Option<Vec<u8>> {
    let limit = match transport {
        Transport::Udp => udp_limit,
        Transport::Tcp => MAX_TCP_MESSAGE,
    };
    match answer.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Some(bytes),
        _ => answer.truncate().to_vec().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn query(with_edns: bool) -> Message {
        let mut query = Message::new(0x1234, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(
            Name::from_ascii("host.example.").expect("name"),
            RecordType::A,
        ));
        if with_edns {
            let mut edns = Edns::new();
            edns.set_max_payload(4096);
            query.set_edns(edns);
        }
        query
    }

    #[test]
    fn a_local_answer_keeps_the_id_echoes_the_question_and_sets_ra() {
        let answer = answer_to(&query(false), ResponseCode::NXDomain);
        assert_eq!(answer.id, 0x1234);
        assert_eq!(answer.message_type, MessageType::Response);
        assert_eq!(answer.response_code, ResponseCode::NXDomain);
        assert!(answer.recursion_available && answer.recursion_desired);
        assert_eq!(answer.queries, query(false).queries);
        assert!(answer.answers.is_empty() && answer.edns.is_none());
        assert!(answer_to(&query(true), ResponseCode::NoError)
            .edns
            .is_some());
    }

    #[test]
    fn the_udp_limit_is_512_without_edns_and_the_edns_size_with_it() {
        assert_eq!(udp_limit(&query(false)), 512);
        assert_eq!(udp_limit(&query(true)), 4096);
    }

    #[test]
    fn an_answer_too_large_for_udp_is_truncated_with_tc_and_whole_over_tcp() {
        let mut answer = answer_to(&query(false), ResponseCode::NoError);
        for last in 0..=60u8 {
            answer.add_answer(Record::from_rdata(
                Name::from_ascii("host.example.").expect("name"),
                60,
                RData::A(A::new(198, 51, 100, last)),
            ));
        }
        let over_udp = encode_for_guest(&answer, Transport::Udp, 512).expect("encodes");
        let decoded = Message::from_vec(&over_udp).expect("decodes");
        assert!(over_udp.len() <= 512);
        assert!(decoded.truncation && decoded.answers.is_empty());
        assert_eq!((decoded.id, decoded.queries.len()), (0x1234, 1));

        let over_tcp = encode_for_guest(&answer, Transport::Tcp, 512).expect("encodes");
        let decoded = Message::from_vec(&over_tcp).expect("decodes");
        assert!(!decoded.truncation);
        assert_eq!(decoded.answers.len(), 61);
    }
}
