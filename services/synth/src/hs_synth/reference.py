"""Reference tables the generator draws from. Weights are approximate population shares."""

from __future__ import annotations

from dataclasses import dataclass

# (surname, pinyin, weight per mille). Includes surnames whose everyday reading differs from
# the character's common reading (单 Shan, 曾 Zeng, 解 Xie, 仇 Qiu, 区 Ou, 查 Zha, 覃 Qin, 朴 Piao)
# and compound surnames, because they are what breaks naive romanisation.
SURNAMES: tuple[tuple[str, str, float], ...] = (
    ("王", "wang", 71), ("李", "li", 70), ("张", "zhang", 67), ("刘", "liu", 54), ("陈", "chen", 46),
    ("杨", "yang", 31), ("黄", "huang", 24), ("赵", "zhao", 23), ("吴", "wu", 20), ("周", "zhou", 19),
    ("徐", "xu", 13), ("孙", "sun", 12), ("马", "ma", 12), ("朱", "zhu", 11), ("胡", "hu", 11),
    ("郭", "guo", 10), ("何", "he", 9), ("林", "lin", 9), ("罗", "luo", 9), ("高", "gao", 9),
    ("郑", "zheng", 8), ("梁", "liang", 8), ("谢", "xie", 7), ("宋", "song", 6), ("唐", "tang", 6),
    ("许", "xu", 6), ("韩", "han", 5), ("冯", "feng", 5), ("邓", "deng", 5), ("曹", "cao", 5),
    ("彭", "peng", 5), ("曾", "zeng", 5), ("肖", "xiao", 5), ("田", "tian", 4), ("董", "dong", 4),
    ("潘", "pan", 4), ("袁", "yuan", 4), ("蔡", "cai", 4), ("蒋", "jiang", 4), ("余", "yu", 4),
    ("于", "yu", 4), ("杜", "du", 3), ("叶", "ye", 3), ("程", "cheng", 3), ("魏", "wei", 3),
    ("苏", "su", 3), ("吕", "lv", 3), ("丁", "ding", 3), ("任", "ren", 3), ("沈", "shen", 3),
    ("汪", "wang", 2), ("单", "shan", 0.5), ("解", "xie", 0.5), ("仇", "qiu", 0.3), ("区", "ou", 0.2),
    ("查", "zha", 0.3), ("覃", "qin", 0.5), ("朴", "piao", 0.3), ("欧阳", "ouyang", 0.5),
    ("司马", "sima", 0.1), ("诸葛", "zhuge", 0.1), ("上官", "shangguan", 0.1),
)  # fmt: skip

# Given-name characters with their pinyin; several share a reading, which is what a typist
# choosing the wrong character from an input method produces (homophones).
GIVEN_CHARS: tuple[tuple[str, str], ...] = (
    ("伟", "wei"), ("玮", "wei"), ("威", "wei"), ("薇", "wei"), ("芳", "fang"), ("方", "fang"),
    ("娜", "na"), ("敏", "min"), ("静", "jing"), ("婧", "jing"), ("晶", "jing"), ("丽", "li"),
    ("立", "li"), ("强", "qiang"), ("磊", "lei"), ("蕾", "lei"), ("军", "jun"), ("君", "jun"),
    ("俊", "jun"), ("洋", "yang"), ("阳", "yang"), ("勇", "yong"), ("艳", "yan"), ("燕", "yan"),
    ("杰", "jie"), ("洁", "jie"), ("娟", "juan"), ("涛", "tao"), ("明", "ming"), ("鸣", "ming"),
    ("超", "chao"), ("秀", "xiu"), ("霞", "xia"), ("平", "ping"), ("萍", "ping"), ("刚", "gang"),
    ("桂", "gui"), ("英", "ying"), ("颖", "ying"), ("华", "hua"), ("建", "jian"), ("健", "jian"),
    ("国", "guo"), ("文", "wen"), ("雯", "wen"), ("辉", "hui"), ("慧", "hui"), ("晓", "xiao"),
    ("小", "xiao"), ("红", "hong"), ("宏", "hong"), ("鹏", "peng"), ("海", "hai"), ("波", "bo"),
    ("博", "bo"), ("宇", "yu"), ("雨", "yu"), ("玉", "yu"), ("浩", "hao"), ("昊", "hao"),
    ("然", "ran"), ("子", "zi"), ("梓", "zi"), ("轩", "xuan"), ("萱", "xuan"), ("欣", "xin"),
    ("鑫", "xin"), ("心", "xin"), ("怡", "yi"), ("逸", "yi"), ("毅", "yi"), ("佳", "jia"),
    ("嘉", "jia"), ("琪", "qi"), ("淇", "qi"), ("琦", "qi"), ("涵", "han"), ("晗", "han"),
    ("睿", "rui"), ("瑞", "rui"), ("泽", "ze"), ("思", "si"), ("诗", "shi"), ("雪", "xue"),
    ("梅", "mei"), ("兰", "lan"), ("春", "chun"), ("秋", "qiu"), ("冬", "dong"), ("东", "dong"),
    ("亮", "liang"), ("志", "zhi"), ("智", "zhi"), ("晨", "chen"), ("辰", "chen"), ("宁", "ning"),
    ("凯", "kai"), ("楠", "nan"), ("南", "nan"), ("婷", "ting"), ("庭", "ting"), ("玲", "ling"),
    ("琳", "lin"), ("霖", "lin"), ("斌", "bin"), ("彬", "bin"), ("成", "cheng"), ("诚", "cheng"),
    ("峰", "feng"), ("锋", "feng"), ("振", "zhen"), ("珍", "zhen"), ("帆", "fan"), ("凡", "fan"),
    ("璐", "lu"), ("露", "lu"), ("翔", "xiang"), ("祥", "xiang"), ("倩", "qian"), ("茜", "qian"),
)  # fmt: skip


@dataclass(frozen=True)
class District:
    code: str  # GB/T 2260
    province: str
    city: str
    district: str
    city_pinyin: str
    weight: float  # share of residents in the generated population


# Residence districts: three cities with hospitals and clinics, plus districts people were born
# in and moved from (their ID numbers keep the birth place).
DISTRICTS: tuple[District, ...] = (
    District("330102", "浙江省", "杭州市", "上城区", "Hangzhou", 6), District("330105", "浙江省", "杭州市", "拱墅区", "Hangzhou", 6),
    District("330106", "浙江省", "杭州市", "西湖区", "Hangzhou", 7), District("330108", "浙江省", "杭州市", "滨江区", "Hangzhou", 4),
    District("330110", "浙江省", "杭州市", "余杭区", "Hangzhou", 8),
    District("310101", "上海市", "上海市", "黄浦区", "Shanghai", 5), District("310104", "上海市", "上海市", "徐汇区", "Shanghai", 7),
    District("310105", "上海市", "上海市", "长宁区", "Shanghai", 4), District("310106", "上海市", "上海市", "静安区", "Shanghai", 6),
    District("310115", "上海市", "上海市", "浦东新区", "Shanghai", 12),
    District("110101", "北京市", "北京市", "东城区", "Beijing", 4), District("110102", "北京市", "北京市", "西城区", "Beijing", 5),
    District("110105", "北京市", "北京市", "朝阳区", "Beijing", 10), District("110106", "北京市", "北京市", "丰台区", "Beijing", 6),
    District("110108", "北京市", "北京市", "海淀区", "Beijing", 9),
)  # fmt: skip

BIRTH_REGIONS: tuple[str, ...] = (
    "440106", "440305", "510107", "420106", "320106", "370102", "410105", "430102", "340104", "350102",
)  # fmt: skip

STREETS: tuple[tuple[str, str], ...] = (
    ("解放路", "Jiefang Lu"), ("中山路", "Zhongshan Lu"), ("人民路", "Renmin Lu"), ("建设路", "Jianshe Lu"),
    ("和平路", "Heping Lu"), ("文化路", "Wenhua Lu"), ("延安路", "Yan'an Lu"), ("长江路", "Changjiang Lu"),
    ("新华路", "Xinhua Lu"), ("胜利路", "Shengli Lu"), ("青年路", "Qingnian Lu"), ("学院路", "Xueyuan Lu"),
    ("光明街", "Guangming Jie"), ("东风路", "Dongfeng Lu"), ("幸福里", "Xingfu Li"),
)  # fmt: skip

MOBILE_PREFIXES: tuple[str, ...] = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153", "155",
    "156", "157", "158", "159", "176", "177", "178", "180", "181", "182", "183", "186", "187", "188",
    "189", "198", "199",
)  # fmt: skip


@dataclass(frozen=True)
class NotifiableDisease:
    name: str
    icd10: str
    icd10_display: str
    klass: str  # 甲 / 乙 / 丙
    daily_rate_per_100k: float  # baseline cases per 100,000 residents per day
    peak_month: int | None  # seasonal peak (None: flat)


# Law of the PRC on the Prevention and Control of Infectious Diseases (2025 revision); ICD-10
# from the WHO 2019 tabular list (../shared/reference/clinical.md §2a).
NOTIFIABLE_DISEASES: tuple[NotifiableDisease, ...] = (
    NotifiableDisease("流行性感冒", "J11.1", "流行性感冒", "丙", 2.0, 1),
    NotifiableDisease("手足口病", "B08.4", "手足口病", "丙", 0.6, 6),
    NotifiableDisease("细菌性痢疾", "A03.9", "细菌性痢疾", "乙", 0.15, 8),
    NotifiableDisease("肺结核", "A15.0", "肺结核", "乙", 0.15, None),
    NotifiableDisease("猩红热", "A38", "猩红热", "乙", 0.08, 12),
    NotifiableDisease("霍乱", "A00.9", "霍乱", "甲", 0.0, None),
)
