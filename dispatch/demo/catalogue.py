"""The service catalogue (服务目录) and the subsidy programmes that pay for it.

Prices are list prices in whole yuan, stored in fen. "S" marks an item the
government buys for subsidised residents (政府购买服务); urgent items are
offered to several providers at once. A few items are Hohhot-specific:
halal meals for the Hui quarter, winter heating faults, snow clearing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    code: str
    name_zh: str
    name_en: str
    position: int


@dataclass(frozen=True)
class Item:
    code: str
    name_zh: str
    name_en: str
    unit: str
    unit_price_fen: int
    subsidy_eligible: bool
    urgent: bool

    @property
    def category_code(self) -> str:
        return self.code[:2]


@dataclass(frozen=True)
class SubsidyProgramme:
    code: str
    name: str
    monthly_allowance_fen: int
    coverage_percent: int


CATEGORIES: tuple[Category, ...] = (
    Category("LC", "生活照料", "Personal care", 1),
    Category("HK", "家政服务", "Housekeeping", 2),
    Category("AR", "家电维修", "Home and appliance repair", 3),
    Category("MS", "助餐配餐", "Meals", 4),
    Category("MN", "医疗护理", "Nursing and medical care", 5),
    Category("ES", "精神慰藉", "Companionship and emotional support", 6),
    Category("RH", "康复保健", "Rehabilitation and wellness", 7),
    Category("ER", "紧急救援", "Emergency help", 8),
    Category("LA", "法律咨询", "Legal and administrative advice", 9),
)

_S, _U = "S", "U"


def _item(code: str, zh: str, en: str, unit: str, yuan: int, *flags: str) -> Item:
    return Item(code, zh, en, unit, yuan * 100, _S in flags, _U in flags)


ITEMS: tuple[Item, ...] = (
    _item("LC01", "助浴", "Assisted bathing", "visit", 60, _S),
    _item("LC02", "上门理发", "Haircut at home", "visit", 20, _S),
    _item("LC03", "洗头", "Hair washing", "visit", 15, _S),
    _item("LC04", "修剪指（趾）甲", "Nail trimming", "visit", 15, _S),
    _item("LC05", "助行陪护", "Walking assistance", "hour", 30, _S),
    _item("LC06", "陪同就医", "Escort to a clinic or hospital", "visit", 80, _S),
    _item("LC07", "代购代办", "Shopping and errands", "visit", 20, _S),
    _item("LC08", "生活照料（小时）", "Personal care by the hour", "hour", 35, _S),
    _item("LC09", "协助如厕", "Toileting assistance", "visit", 20, _S),
    _item("LC10", "卧床翻身擦洗", "Turning and bed bath", "visit", 50, _S),
    _item("LC11", "夜间陪护", "Overnight attendance", "visit", 200, _S),
    _item("LC12", "个人卫生清洁", "Personal hygiene care", "visit", 30, _S),
    _item("HK01", "日常保洁", "Routine cleaning", "hour", 40, _S),
    _item("HK02", "深度保洁", "Deep cleaning", "hour", 50),
    _item("HK03", "擦玻璃", "Window cleaning", "hour", 45),
    _item("HK04", "油烟机清洗", "Range hood cleaning", "item", 120),
    _item("HK05", "空调清洗", "Air conditioner cleaning", "item", 100),
    _item("HK06", "洗衣", "Laundry", "visit", 25, _S),
    _item("HK07", "衣物缝补", "Clothes mending", "item", 10, _S),
    _item("HK08", "拆洗被褥", "Washing quilts and bedding", "item", 40, _S),
    _item("HK09", "冬储菜搬运", "Carrying winter vegetable stores", "visit", 30, _S),
    _item("HK10", "搬家搬运", "Moving and carrying", "hour", 80),
    _item("HK11", "除螨消毒", "Dust-mite removal and disinfection", "visit", 80),
    _item("HK12", "地毯沙发清洗", "Carpet and sofa cleaning", "item", 150),
    _item("HK13", "冬季扫雪除冰", "Snow and ice clearing", "hour", 40, _S),
    _item("AR01", "开锁", "Locksmith: door opening", "visit", 80, _U),
    _item("AR02", "水管爆裂维修", "Burst water pipe repair", "visit", 120, _U),
    _item("AR03", "电路故障维修", "Electrical fault repair", "visit", 80, _U),
    _item("AR04", "暖气漏水维修", "Leaking radiator repair", "visit", 100, _U),
    _item("AR05", "下水道疏通", "Drain unblocking", "visit", 80),
    _item("AR06", "马桶维修", "Toilet repair", "visit", 60),
    _item("AR07", "燃气灶维修", "Gas stove repair", "visit", 70),
    _item("AR08", "热水器维修", "Water heater repair", "visit", 90),
    _item("AR09", "电视机维修", "Television repair", "visit", 80),
    _item("AR10", "洗衣机维修", "Washing machine repair", "visit", 80),
    _item("AR11", "冰箱维修", "Refrigerator repair", "visit", 90),
    _item("AR12", "更换灯具开关", "Replacing lights and switches", "item", 30, _S),
    _item("AR13", "门窗维修", "Door and window repair", "visit", 60),
    _item("AR14", "适老化改造评估", "Age-friendly home assessment", "visit", 100, _S),
    _item("AR15", "安装扶手", "Grab bar installation", "item", 80, _S),
    # a home unit, pendant or sensor that fell silent or reports a fault: the repair order a device opens
    _item("AR16", "呼叫器设备维修", "Alarm unit repair", "visit", 50, _S, _U),
    _item("MS01", "午餐送餐", "Lunch delivery", "meal", 15, _S),
    _item("MS02", "晚餐送餐", "Dinner delivery", "meal", 15, _S),
    _item("MS03", "早餐送餐", "Breakfast delivery", "meal", 8, _S),
    _item("MS04", "助餐点就餐", "Meal at a community canteen", "meal", 12, _S),
    _item("MS05", "糖尿病餐", "Diabetic meal", "meal", 18, _S),
    _item("MS06", "流食软食", "Soft or liquid diet meal", "meal", 18, _S),
    _item("MS07", "清真餐送餐", "Halal meal delivery", "meal", 16, _S),
    _item("MS08", "上门做饭", "Cooking at home", "hour", 35, _S),
    _item("MS09", "节日配餐", "Festival meal", "meal", 30),
    _item("MS10", "蒙餐送餐", "Mongolian meal delivery", "meal", 25),
    _item("MS11", "老年营养餐", "Nutrition meal for the elderly", "meal", 20, _S),
    _item("MN01", "测量血压血糖", "Blood pressure and glucose check", "visit", 20, _S),
    _item("MN02", "上门打针", "Injection at home", "visit", 30, _S),
    _item("MN03", "上门输液", "Intravenous infusion at home", "visit", 60, _S),
    _item("MN04", "伤口换药", "Wound dressing", "visit", 40, _S),
    _item("MN05", "压疮护理", "Pressure sore care", "visit", 60, _S),
    _item("MN06", "导尿护理", "Urinary catheter care", "visit", 80, _S),
    _item("MN07", "鼻饲护理", "Nasogastric tube feeding care", "visit", 60, _S),
    _item("MN08", "代取药品", "Collecting prescriptions", "visit", 20, _S),
    _item("MN09", "家庭医生上门巡诊", "Family doctor home visit", "visit", 100, _S),
    _item("MN10", "护理需求评估", "Nursing needs assessment", "visit", 80, _S),
    _item("MN11", "吸痰护理", "Airway suctioning", "visit", 50, _S),
    _item("MN12", "专业护工（日）", "Professional carer for a day", "item", 260, _S),
    _item("ES01", "上门陪聊", "Companionship visit", "hour", 25, _S),
    _item("ES02", "电话问候", "Telephone check-in", "item", 5, _S),
    _item("ES03", "读书读报", "Reading aloud", "hour", 25, _S),
    _item("ES04", "心理疏导", "Counselling", "hour", 100, _S),
    _item("ES05", "陪同散步", "Walking together", "hour", 25, _S),
    _item("ES06", "节日探访", "Holiday visit", "visit", 30, _S),
    _item("ES07", "代写书信", "Writing letters", "item", 10, _S),
    _item("ES08", "智能手机教学", "Smartphone lessons", "hour", 30),
    _item("ES09", "临终关怀陪伴", "Hospice companionship", "hour", 60, _S),
    _item("ES10", "生日慰问", "Birthday visit", "visit", 50, _S),
    _item("RH01", "康复训练", "Rehabilitation exercises", "hour", 80, _S),
    _item("RH02", "推拿按摩", "Tuina massage", "hour", 80),
    _item("RH03", "针灸", "Acupuncture", "visit", 100),
    _item("RH04", "艾灸", "Moxibustion", "visit", 60),
    _item("RH05", "足疗", "Foot therapy", "hour", 60),
    _item("RH06", "拔罐", "Cupping", "visit", 40),
    _item("RH07", "康复辅具租赁", "Rehabilitation aid rental", "item", 50, _S),
    _item("RH08", "助听器调试", "Hearing aid fitting", "visit", 50),
    _item("RH09", "健康讲座", "Health talk", "visit", 20),
    _item("RH10", "中医体质辨识", "Traditional Chinese medicine assessment", "visit", 50, _S),
    _item("RH11", "吞咽功能训练", "Swallowing training", "hour", 90, _S),
    _item("ER01", "紧急上门查看", "Urgent welfare check", "visit", 50, _S, _U),
    _item("ER02", "跌倒救助", "Help after a fall", "visit", 100, _S, _U),
    _item("ER03", "紧急陪同送医", "Urgent escort to hospital", "visit", 150, _S, _U),
    _item("ER04", "燃气泄漏处置", "Gas leak response", "visit", 100, _U),
    _item("ER05", "夜间紧急陪护", "Emergency overnight attendance", "visit", 200, _S, _U),
    _item("ER06", "停水停电应急", "Water or power outage help", "visit", 50, _U),
    _item("ER07", "取暖故障应急", "Heating failure emergency", "visit", 100, _U),
    _item("ER08", "走失协寻", "Search for a missing elder", "visit", 100, _U),
    _item("ER09", "制氧机紧急配送", "Urgent oxygen concentrator delivery", "item", 150, _U),
    _item("LA01", "法律咨询", "Legal consultation", "hour", 50),
    _item("LA02", "遗嘱咨询", "Advice on wills", "visit", 200),
    _item("LA03", "赡养纠纷调解", "Mediation of family support disputes", "visit", 100, _S),
    _item("LA04", "代写法律文书", "Drafting legal documents", "item", 150),
    _item("LA05", "法律援助申请协助", "Help applying for legal aid", "visit", 0, _S),
    _item("LA06", "防诈骗咨询", "Advice against fraud", "visit", 0, _S),
    _item("LA07", "代办证件", "Help obtaining certificates", "visit", 30, _S),
    _item("LA08", "养老金政策咨询", "Pension policy advice", "visit", 0, _S),
    _item("LA09", "房产继承咨询", "Property inheritance advice", "hour", 200),
    _item("LA10", "公证咨询", "Notary advice", "visit", 50),
)

# Monthly service credit, not cash: what the civil-affairs office buys per resident.
SUBSIDY_PROGRAMMES: tuple[SubsidyProgramme, ...] = (
    SubsidyProgramme("GAOLING", "高龄老人服务补贴", 10000, 100),
    SubsidyProgramme("DIBAO", "低保老人服务补贴", 20000, 100),
    SubsidyProgramme("SHINENG", "失能老人护理补贴", 40000, 90),
)


def items_in(category_code: str) -> tuple[Item, ...]:
    return tuple(item for item in ITEMS if item.category_code == category_code)
